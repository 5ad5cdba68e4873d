"""Model download and resolution, against a local stand-in for the Hugging Face Hub.

``FakeHub`` runs two HTTP servers on 127.0.0.1, as the real Hub does for LFS files:

* the *hub*: ``HEAD/GET /{repo_id}/resolve/{revision}/{filename}`` answers ``302`` to
  the CDN with ``X-Repo-Commit``, ``X-Linked-Etag`` (the LFS sha256), ``X-Linked-Size``
  and ``ETag``; unknown repos / revisions / files get the Hub's ``X-Error-Code`` 4xx;
* the *CDN* (another origin, so huggingface_hub neither follows the HEAD redirect nor
  forwards the token): ``GET /blobs/{sha256}`` serves the bytes with ``Content-Length``.

Nothing leaves 127.0.0.1.  The fixture tiny nomic model is served as
``nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from lodevec import hub
from lodevec.errors import DownloadError, InputError, ModelNotFoundError

FIXTURES = Path(__file__).parent / "fixtures" / "nomic-tiny"
REPO = "nomic-ai/nomic-embed-text-v1.5-GGUF"
Q4 = "nomic-embed-text-v1.5.Q4_K_M.gguf"
Q8 = "nomic-embed-text-v1.5.Q8_0.gguf"
Q4_BYTES = (FIXTURES / "tiny-nomic-v1.5.Q4_K_M.gguf").read_bytes()
Q8_BYTES = (FIXTURES / "tiny-nomic-v1.5.Q8_0.gguf").read_bytes()
Q4_SHA = hashlib.sha256(Q4_BYTES).hexdigest()
Q8_SHA = hashlib.sha256(Q8_BYTES).hexdigest()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_lodevec_test_token_not_real"


# --------------------------------------------------------------------- fake Hub
class FakeHub:
    """Hub + CDN servers; ``requests`` records ``(server, method, path, authorization)``
    of the file requests (``/api/...`` calls, answered 404, are not counted)."""

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.files = files
        self.corrupt = False  # CDN flips a byte of what it serves (same length)
        self.listed_sha: str | None = None  # Hub metadata lists this sha instead of the real one
        self.requests: list[tuple[str, str, str, str | None]] = []
        self._lock = threading.Lock()
        self.cdn = self._serve(self._cdn_handler())
        self.hub = self._serve(self._hub_handler())
        self.endpoint = f"http://127.0.0.1:{self.hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"

    @staticmethod
    def _serve(handler) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return server

    def close(self) -> None:
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    def count(self, server: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if server in (None, r[0]))

    def _record(self, server: str, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.startswith("/api/"):
            return  # huggingface_hub's own once-a-day registry fetch (telemetry), not a download
        with self._lock:
            self.requests.append((server, handler.command, handler.path,
                                  handler.headers.get("Authorization")))

    def _blob(self, sha: str) -> bytes | None:
        for data in self.files.values():
            if hashlib.sha256(data).hexdigest() == sha:
                return data
        return None

    def _hub_handler(self):
        fake = self

        class Hub(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                fake._record("hub", self)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", urlsplit(self.path).path)
                if m is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                repo, revision, filename = m.group(1), unquote(m.group(2)), unquote(m.group(3))
                if not any(r == repo for r, _ in fake.files):
                    return self._error(401, "RepoNotFound", "Repository not found")
                if revision not in ("main", COMMIT):
                    return self._error(404, "RevisionNotFound", "Invalid rev id")
                data = fake.files.get((repo, filename))
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found")
                sha = hashlib.sha256(data).hexdigest()
                listed = fake.listed_sha or sha
                body = f"Found. Redirecting to {fake.cdn_url}/blobs/{sha}".encode()
                self.send_response(302)
                self.send_header("Location", f"{fake.cdn_url}/blobs/{sha}?filename={filename}")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{listed}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{listed}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD

        return Hub

    def _cdn_handler(self):
        fake = self

        class Cdn(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._record("cdn", self)
                m = re.fullmatch(r"/blobs/([0-9a-f]{64})", urlsplit(self.path).path)
                data = fake._blob(m.group(1)) if m else None
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fake.corrupt:
                    data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
                start = 0
                rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if rng:
                    start = int(rng.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", f'"{m.group(1)}"')
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data[start:])

            do_HEAD = do_GET

        return Cdn


def write_manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"_comment": "test manifest", "models": entries}), encoding="utf-8")
    return path


def q4_entry(**over) -> dict:
    entry = {"repo": REPO, "file": Q4, "quant": "Q4_K_M", "revision": "main",
             "size": len(Q4_BYTES), "sha256": Q4_SHA}
    entry.update(over)
    return entry


def q8_entry(**over) -> dict:
    # sha256 and size null: verified against the Hub's metadata
    entry = {"repo": REPO, "file": Q8, "quant": "Q8_0", "revision": "main",
             "size": None, "sha256": None}
    entry.update(over)
    return entry


@pytest.fixture
def fake_hub():
    server = FakeHub({(REPO, Q4): Q4_BYTES, (REPO, Q8): Q8_BYTES})
    yield server
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, fake_hub):
    """Isolated cache + manifest, HF_ENDPOINT pointing at the fake Hub."""
    for var in ("LODEVEC_MODEL", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME",
                "HF_HUB_CACHE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # also keeps a real token file from being read
    monkeypatch.setenv("LODEVEC_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    manifest = write_manifest(tmp_path / "manifest.json", [q4_entry(), q8_entry()])
    monkeypatch.setenv("LODEVEC_MANIFEST", str(manifest))
    return tmp_path


def gguf_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.gguf"))


# ------------------------------------------------------------------------- pull
def test_pull_downloads_and_verifies(env, fake_hub):
    path = hub.pull("Q4_K_M", progress=False)
    assert path == env / "models" / Q4
    assert path.read_bytes() == Q4_BYTES
    assert (env / "models" / (Q4 + ".sha256")).read_text() == f"{Q4_SHA}  {Q4}\n"
    # the unverified download never sat in models/ itself, and nothing is left in staging
    assert gguf_files(env / "models") == [path]
    # HEADs to the Hub carry the token; the CDN (another origin) gets none
    hub_reqs = [r for r in fake_hub.requests if r[0] == "hub"]
    cdn_reqs = [r for r in fake_hub.requests if r[0] == "cdn"]
    assert hub_reqs and all(r[1] == "HEAD" and r[3] == f"Bearer {TOKEN}" for r in hub_reqs)
    assert [(r[1], r[3]) for r in cdn_reqs] == [("GET", None)]
    # the download is pinned to the commit the metadata came from
    assert any(f"/resolve/{COMMIT}/" in r[2] for r in hub_reqs)


def test_second_pull_makes_no_request_and_no_rehash(env, fake_hub, monkeypatch):
    first = hub.pull(progress=False)
    before = fake_hub.count()

    def no_hash(path):
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(hub, "sha256_file", no_hash)
    assert hub.pull(progress=False) == first
    assert fake_hub.count() == before
    fake_hub.close()  # and with the Hub gone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.pull(progress=False) == first


def test_file_changed_after_verification_is_fetched_again(env, fake_hub):
    path = hub.pull(progress=False)
    path.write_bytes(b"\0" * len(Q4_BYTES))  # same size, newer mtime than the sidecar
    future = time.time() + 5
    os.utime(path, (future, future))
    n = fake_hub.count("cdn")
    assert hub.pull(progress=False) == path
    assert fake_hub.count("cdn") == n + 1
    assert path.read_bytes() == Q4_BYTES


def test_copy_placed_by_hand_is_verified_without_network(env, fake_hub):
    models = env / "models"
    models.mkdir()
    shutil.copyfile(FIXTURES / "tiny-nomic-v1.5.Q4_K_M.gguf", models / Q4)
    assert hub.pull(progress=False) == models / Q4
    assert fake_hub.count() == 0
    assert (models / (Q4 + ".sha256")).read_text().split()[0] == Q4_SHA


def test_force_downloads_again(env, fake_hub):
    hub.pull(progress=False)
    n = fake_hub.count("cdn")
    hub.pull(force=True, progress=False)
    assert fake_hub.count("cdn") == n + 1


def test_wrong_sha256_in_manifest(env, fake_hub, monkeypatch):
    bad = "0" * 64
    write_manifest(env / "manifest.json", [q4_entry(sha256=bad)])
    with pytest.raises(DownloadError) as info:
        hub.pull(progress=False)
    msg = str(info.value)
    assert Q4 in msg and bad in msg and Q4_SHA in msg
    assert gguf_files(env) == []


def test_corrupt_download_is_deleted(env, fake_hub):
    fake_hub.corrupt = True
    with pytest.raises(DownloadError) as info:
        hub.pull(progress=False)
    msg = str(info.value)
    assert Q4 in msg and "sha256 mismatch" in msg and f"expected {Q4_SHA}" in msg
    assert "got " in msg and fake_hub.endpoint in msg
    assert gguf_files(env) == []
    assert not (env / "models" / (Q4 + ".sha256")).exists()


def test_manifest_size_disagrees_with_hub(env, fake_hub):
    write_manifest(env / "manifest.json", [q4_entry(size=len(Q4_BYTES) + 1)])
    with pytest.raises(DownloadError, match="size mismatch"):
        hub.pull(progress=False)
    assert gguf_files(env) == []


def test_null_hash_is_taken_from_hub_metadata(env, fake_hub):
    path = hub.pull("q8_0", progress=False)  # quant labels are case-insensitive
    assert path.read_bytes() == Q8_BYTES
    assert (env / "models" / (Q8 + ".sha256")).read_text().split()[0] == Q8_SHA
    n = fake_hub.count()
    assert hub.pull("Q8_0", progress=False) == path
    assert fake_hub.count() == n


def test_null_hash_corrupt_download_is_deleted(env, fake_hub):
    fake_hub.corrupt = True
    with pytest.raises(DownloadError, match=f"expected {Q8_SHA}"):
        hub.pull("Q8_0", progress=False)
    assert gguf_files(env) == []


def test_hub_listing_another_hash_than_manifest(env, fake_hub):
    fake_hub.listed_sha = "f" * 64  # upstream changed the file
    with pytest.raises(DownloadError) as info:
        hub.pull(progress=False)
    assert Q4_SHA in str(info.value) and "f" * 64 in str(info.value)
    assert fake_hub.count("cdn") == 0  # failed before downloading
    assert gguf_files(env) == []


def test_server_down(env, monkeypatch):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as info:
        hub.pull(progress=False)
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert endpoint in msg and "unreachable" in msg and "HF_ENDPOINT" in msg and Q4 in msg
    assert gguf_files(env) == []


def test_offline_without_cached_file(env, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE") as info:
        hub.pull(progress=False)
    assert Q4 in str(info.value)
    assert fake_hub.count() == 0


def test_file_missing_on_hub(env, fake_hub):
    write_manifest(env / "manifest.json", [q4_entry(file="nomic-embed-text-v1.5.Q9_9.gguf")])
    with pytest.raises(DownloadError, match=r"nomic-embed-text-v1\.5\.Q9_9\.gguf: not found"):
        hub.pull(progress=False)


def test_repo_missing_on_hub(env, fake_hub):
    write_manifest(env / "manifest.json", [q4_entry(repo="nobody/nothing")])
    with pytest.raises(DownloadError, match="nobody/nothing: repository not found.*HF_TOKEN"):
        hub.pull(progress=False)


def test_unknown_quant_lists_valid_ones(env):
    with pytest.raises(InputError) as info:
        hub.pull("Q7_X", progress=False)
    assert isinstance(info.value, ValueError)
    assert "Q7_X" in str(info.value) and "Q4_K_M, Q8_0" in str(info.value)


def test_progress_bar_can_be_silenced(env, fake_hub, capsys):
    hub.pull(progress=False)
    captured = capsys.readouterr()
    assert "%" not in captured.err and "%" not in captured.out


def test_downloaded_file_opens(env, fake_hub):
    from lodevec.gguf import GGUFModel

    model = GGUFModel.open(hub.pull(progress=False))
    assert model.config.architecture == "nomic-bert"


# --------------------------------------------------------------------- manifest
def test_packaged_manifest(monkeypatch):
    monkeypatch.delenv("LODEVEC_MANIFEST", raising=False)
    entries = hub.load_manifest()
    quants = {e.quant for e in entries}
    assert {"f32", "f16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0",
            "Q3_K_M", "Q3_K_S", "Q3_K_L", "Q2_K"} <= quants
    for e in entries:
        assert e.repo == REPO and e.revision == "main"
        assert e.file == f"nomic-embed-text-v1.5.{e.quant}.gguf"
        assert e.size is None or e.size > 10_000_000
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
    q4 = hub.entry_for()
    assert (q4.file, q4.size) == (Q4, 84106624)
    assert q4.sha256 == "d4e388894e09cf3816e8b0896d81d265b55e7a9fff9ab03fe8bf4ef5e11295ac"


def test_manifest_file_is_valid_json_with_comment():
    data = json.loads((Path(__file__).parents[1] / "models" / "manifest.json").read_text())
    assert "null" in " ".join(data["_comment"])


@pytest.mark.parametrize("bad, match", [
    ("{", "not valid JSON"),
    ('{"models": []}', "at least one entry"),
    ('{"models": [{"repo": "a/b", "quant": "Q4_K_M"}]}', "'file'"),
    ('{"models": [{"repo": "a/b", "file": "../x.gguf", "quant": "Q"}]}', "plain file name"),
    ('{"models": [{"repo": "a/b", "file": "x.gguf", "quant": "Q", "sha256": "abc"}]}', "64 hex"),
    ('{"models": [{"repo": "a/b", "file": "x.gguf", "quant": "Q", "size": -1}]}', "byte count"),
])
def test_bad_manifest_override(tmp_path, monkeypatch, bad, match):
    path = tmp_path / "m.json"
    path.write_text(bad)
    monkeypatch.setenv("LODEVEC_MANIFEST", str(path))
    with pytest.raises(InputError, match=match):
        hub.load_manifest()


def test_missing_manifest_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LODEVEC_MANIFEST", str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="nope.json"):
        hub.load_manifest()


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("LODEVEC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir() == Path.home() / ".cache" / "lodevec"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "lodevec"
    monkeypatch.setenv("LODEVEC_CACHE", str(tmp_path / "lv"))
    assert hub.cache_dir() == tmp_path / "lv"
    assert hub.models_dir() == tmp_path / "lv" / "models"


# --------------------------------------------------------------------- resolution
def test_resolve_model_picks_cached_file(env, fake_hub):
    path = hub.pull(progress=False)
    assert hub.resolve_model() == path
    assert hub.resolve_model(None) == path
    assert hub.cached_models() == [path]


def test_resolve_model_prefers_q4_k_m(env, fake_hub):
    q4 = hub.pull(progress=False)
    q8 = hub.pull("Q8_0", progress=False)
    future = time.time() + 10
    os.utime(q8, (future, future))
    assert hub.cached_models() == [q8, q4]
    assert hub.resolve_model() == q4
    q4.unlink()
    assert hub.resolve_model() == q8
    assert hub.resolve_model("Q8_0") == q8  # a quantization label names the cached file


def test_resolve_model_most_recent_when_no_q4(env):
    models = env / "models"
    models.mkdir()
    old, new = models / "a.gguf", models / "b.gguf"
    old.write_bytes(b"GGUF")
    new.write_bytes(b"GGUF")
    os.utime(old, (1_000_000, 1_000_000))
    assert hub.resolve_model() == new


def test_resolve_model_explicit_path(env, tmp_path, monkeypatch):
    f = tmp_path / "mine.gguf"
    f.write_bytes(Q4_BYTES)
    assert hub.resolve_model(f) == f
    assert hub.resolve_model(str(f)) == f
    monkeypatch.setenv("LODEVEC_MODEL", str(f))
    assert hub.resolve_model() == f
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ModelNotFoundError, match=re.escape(str(missing))):
        hub.resolve_model(missing)
    monkeypatch.setenv("LODEVEC_MODEL", str(missing))
    with pytest.raises(ModelNotFoundError, match=r"missing\.gguf \(from \$LODEVEC_MODEL\)"):
        hub.resolve_model()


def test_resolve_model_none_anywhere(env):
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model()
    msg = str(info.value)
    assert msg.startswith(f"no model given (--model) and none in the cache {env / 'models'}")
    assert "lodevec model pull" in msg
    assert isinstance(info.value, InputError)


def test_resolve_model_quant_not_cached(env):
    with pytest.raises(ModelNotFoundError, match="lodevec model pull --quant Q8_0"):
        hub.resolve_model("Q8_0")
