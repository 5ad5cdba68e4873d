"""Model files: the manifest of known GGUF files, the download cache, and model resolution.

``pull()`` downloads one nomic-embed-text-v1.5 GGUF file from the Hugging Face Hub (or
the mirror named by ``$HF_ENDPOINT``; ``$HF_TOKEN`` is honoured) into
``<cache>/models/<file>`` and verifies its size and SHA-256 before it is put there.
``resolve_model()`` turns ``--model`` / ``$LODEVEC_MODEL`` / the cache into one path.

Verification:

* The expected size and SHA-256 come from the manifest (``models/manifest.json``,
  shipped as ``lodevec.models``).  Where the manifest says ``null`` they come from the
  Hub's own metadata for the file (``X-Linked-Size`` and the LFS SHA-256 in
  ``X-Linked-Etag``), fetched right before the download.  Non-null manifest values are
  compared with that metadata first, so a changed upstream file fails before any byte
  is downloaded.
* The download lands in ``<cache>/models/.staging/``; only after its size and SHA-256
  match is it moved to ``<cache>/models/<file>``.  A bad download is deleted and
  ``DownloadError`` names the file, the expected and the actual value.
* After verification a ``<file>.sha256`` sidecar (``sha256sum`` format) is written.  A
  later ``pull()`` trusts a sidecar that is not older than the file and whose digest
  matches the manifest, so it returns at once, without network and without re-hashing
  hundreds of MB.  A file modified after its sidecar was
  written (newer mtime) is hashed again.  A sidecar does not protect against silent
  disk corruption that keeps the mtime; ``pull(force=True)`` downloads and checks anew.

Only ``huggingface_hub`` is imported lazily, inside ``pull()``; nothing here imports the
compiled kernels.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import __version__, settings
from .errors import DownloadError, InputError, LodevecError, ModelNotFoundError

__all__ = [
    "DEFAULT_QUANT",
    "ManifestEntry",
    "cache_dir",
    "cached_models",
    "entry_for",
    "load_manifest",
    "models_dir",
    "pull",
    "resolve_model",
]

DEFAULT_QUANT = "Q4_K_M"
#: Name of the default model file; ``resolve_model()`` prefers it among cached files.
DEFAULT_FILE = "nomic-embed-text-v1.5.Q4_K_M.gguf"
DEFAULT_ENDPOINT = "https://huggingface.co"
SIDECAR_SUFFIX = ".sha256"

_STAGING = ".staging"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_METADATA_TIMEOUT = 10.0  # seconds for the HEAD request that fetches the file metadata


@dataclass(frozen=True)
class ManifestEntry:
    """One known model file.

    Attributes:
        repo: Hub repository id, e.g. ``"nomic-ai/nomic-embed-text-v1.5-GGUF"``.
        file: file name in the repository (a plain name, no folders).
        quant: quantization label, e.g. ``"Q4_K_M"``.
        revision: branch, tag or commit to download from.
        size: expected size in bytes, or ``None`` to take it from the Hub's metadata.
        sha256: expected lower-case hex SHA-256, or ``None`` to take the Hub's LFS hash.
    """

    repo: str
    file: str
    quant: str
    revision: str = "main"
    size: int | None = None
    sha256: str | None = None


# ----------------------------------------------------------------------- locations
def cache_dir() -> Path:
    """The lodevec cache root.

    Returns:
        ``$LODEVEC_CACHE`` if set, else ``$XDG_CACHE_HOME/lodevec`` (when that is an
        absolute path, as the XDG spec requires), else ``~/.cache/lodevec``.
    """
    return settings.cache_dir()


def models_dir(cache: str | os.PathLike | None = None) -> Path:
    """The folder model files are downloaded to.

    Args:
        cache: cache root; ``None`` for ``cache_dir()``.

    Returns:
        ``<cache>/models``.
    """
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    return root / "models"


# ------------------------------------------------------------------------ manifest
def load_manifest() -> list[ManifestEntry]:
    """Read the manifest of known model files.

    ``$LODEVEC_MANIFEST`` (path to a JSON file of the same form) replaces the packaged
    manifest when set.

    Returns:
        The entries, in file order.

    Raises:
        InputError: ``$LODEVEC_MANIFEST`` cannot be read or is malformed.
        LodevecError: the packaged manifest is missing or malformed (a broken install).
    """
    override = settings.manifest_override()
    if override:
        path = Path(override).expanduser()
        where = f"$LODEVEC_MANIFEST={override}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"{where}: cannot read the manifest ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise InputError(f"{where}: the manifest is not UTF-8 text") from None
        return _parse_manifest(text, where, InputError)
    text, where = _packaged_manifest()
    return _parse_manifest(text, where, LodevecError)


def _packaged_manifest() -> tuple[str, str]:
    """Text and location of the packaged manifest (installed, or the source tree)."""
    try:
        from importlib.resources import files

        res = files("lodevec.models") / "manifest.json"
        return res.read_text(encoding="utf-8"), str(res)
    except (ImportError, OSError):
        pass  # running from a source tree (PYTHONPATH=src): lodevec.models is ../../models
    path = Path(__file__).resolve().parents[2] / "models" / "manifest.json"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError:
        raise LodevecError(
            "the packaged model manifest (lodevec.models/manifest.json) is missing: "
            "reinstall lodevec, or point $LODEVEC_MANIFEST at a manifest file"
        ) from None


def _parse_manifest(text: str, where: str, exc: type[LodevecError]) -> list[ManifestEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise exc(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
    items = data.get("models") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise exc(f'{where}: expected {{"models": [...]}} with at least one entry')
    entries = [_parse_entry(item, f"{where}: models[{i}]", exc) for i, item in enumerate(items)]
    seen: dict[str, str] = {}
    for e in entries:
        key = e.quant.casefold()
        if key in seen:
            raise exc(f"{where}: quantization {e.quant!r} is listed twice")
        seen[key] = e.quant
    return entries


def _parse_entry(item: object, where: str, exc: type[LodevecError]) -> ManifestEntry:
    if not isinstance(item, dict):
        raise exc(f"{where}: expected an object")
    fields: dict[str, object] = {}
    for key in ("repo", "file", "quant"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise exc(f"{where}: {key!r} must be a non-empty string")
        fields[key] = value.strip()
    file = str(fields["file"])
    if Path(file).name != file or file in (".", ".."):
        raise exc(f"{where}: 'file' must be a plain file name, got {file!r}")
    revision = item.get("revision", "main")
    if not isinstance(revision, str) or not revision.strip():
        raise exc(f"{where}: 'revision' must be a non-empty string")
    size = item.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise exc(f"{where}: 'size' must be a byte count or null, got {size!r}")
    sha = item.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha.strip().lower()):
            raise exc(f"{where}: 'sha256' must be 64 hex digits or null, got {sha!r}")
        sha = sha.strip().lower()
    return ManifestEntry(repo=str(fields["repo"]), file=file, quant=str(fields["quant"]),
                         revision=revision.strip(), size=size, sha256=sha)


def entry_for(quant: str = DEFAULT_QUANT) -> ManifestEntry:
    """The manifest entry of one quantization (case-insensitive: ``q8_0`` finds ``Q8_0``).

    Args:
        quant: quantization label.

    Returns:
        The entry.

    Raises:
        InputError: (a ``ValueError``) no entry has that quantization; the message lists
            the valid ones.
    """
    entries = load_manifest()
    want = str(quant).strip().casefold()
    for e in entries:
        if e.quant.casefold() == want:
            return e
    valid = ", ".join(e.quant for e in entries)
    raise InputError(f"unknown quantization {quant!r}; valid: {valid}")


# ---------------------------------------------------------------- verification
def sha256_file(path: Path) -> str:
    """sha256 of a file (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _read_sidecar(path: Path) -> str | None:
    """The digest recorded for ``path``, or ``None`` if absent, unreadable or stale."""
    side = _sidecar(path)
    try:
        if side.stat().st_mtime_ns < path.stat().st_mtime_ns:
            return None  # the file changed after it was verified
        fields = side.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    digest = fields[0].lower() if fields else ""
    return digest if _SHA256_RE.fullmatch(digest) else None


def _write_sidecar(path: Path, digest: str) -> None:
    side = _sidecar(path)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii")
    os.replace(tmp, side)


def _unlink(path: Path) -> None:
    for p in (path, _sidecar(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _verified_local(entry: ManifestEntry, path: Path) -> bool:
    """Whether ``path`` is a complete, verified copy of ``entry`` (no network used).

    Entries whose manifest hash is null can only be verified from a sidecar written
    when the file was checked against the Hub.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if not path.is_file() or (entry.size is not None and size != entry.size):
        return False
    digest = _read_sidecar(path)
    if digest is not None:
        return entry.sha256 is None or digest == entry.sha256
    if entry.sha256 is None:
        return False
    if sha256_file(path) != entry.sha256:
        return False
    _write_sidecar(path, entry.sha256)
    return True


def _check_file(path: Path, name: str, size: int | None, sha256: str, url: str) -> None:
    """Verify a downloaded file; on mismatch delete it and raise ``DownloadError``."""
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        _unlink(path)
        raise DownloadError(
            f"{name}: size mismatch: expected {size} bytes, got {got_size}; "
            f"the download from {url} was deleted"
        )
    got = sha256_file(path)
    if got != sha256:
        _unlink(path)
        raise DownloadError(
            f"{name}: sha256 mismatch: expected {sha256}, got {got}; "
            f"the download from {url} was deleted"
        )


# ------------------------------------------------------------------------- download
def _as_sha256(etag: str | None) -> str | None:
    """The SHA-256 in a Hub ETag (LFS files), or ``None`` (git blobs carry a SHA-1)."""
    if not etag:
        return None
    value = etag.removeprefix("W/").strip('"').strip().lower()
    return value if _SHA256_RE.fullmatch(value) else None


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


_CONNECTION_ERRORS = {
    "ConnectError", "ConnectionError", "ConnectTimeout", "Timeout", "TimeoutException",
    "NetworkError", "TransportError", "ProxyError", "ReadTimeout", "RemoteProtocolError",
    "TooManyRedirects", "SSLError", "LocalEntryNotFoundError",
}


def _download_error(exc: Exception, entry: ManifestEntry, url: str, endpoint: str) -> DownloadError:
    """Map a huggingface_hub / HTTP client exception to a ``DownloadError`` with a hint.

    Matched by class name so that this works whichever HTTP client the installed
    huggingface_hub uses (requests, httpx, httpx2).
    """
    names = _class_names(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "OfflineModeIsEnabled" in names:
        return DownloadError(
            f"{entry.file}: not downloaded: huggingface_hub is in offline mode (HF_HUB_OFFLINE); "
            f"unset it to download from {endpoint}"
        )
    if "GatedRepoError" in names or "RepositoryNotFoundError" in names or status == 401:
        return DownloadError(
            f"{entry.repo}: repository not found or not accessible at {endpoint} "
            f"(HTTP {status}, {url}); if it needs a login set HF_TOKEN, or check HF_ENDPOINT"
        )
    if "RevisionNotFoundError" in names:
        return DownloadError(f"{entry.repo}: revision {entry.revision!r} not found at {endpoint} ({url})")
    if "EntryNotFoundError" in names and "LocalEntryNotFoundError" not in names:
        return DownloadError(
            f"{entry.file}: not found in {entry.repo} at revision {entry.revision!r} "
            f"on {endpoint} ({url})"
        )
    if names & _CONNECTION_ERRORS:
        return DownloadError(
            f"cannot download {entry.file}: {endpoint} is unreachable ({url}: {detail}). "
            "Offline? Check the network or proxy, set HF_ENDPOINT to a reachable Hub mirror, "
            "or download the file yourself and pass --model PATH"
        )
    if status is not None:
        return DownloadError(f"cannot download {entry.file}: HTTP {status} from {url}: {detail}")
    return DownloadError(f"cannot download {entry.file} from {url}: {type(exc).__name__}: {detail}")


def _quiet_kwargs(progress: bool, download: Callable) -> dict:
    """``hf_hub_download`` keyword arguments that silence its progress bar."""
    if progress or "tqdm_class" not in inspect.signature(download).parameters:
        return {}
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Silent(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return {"tqdm_class": _Silent}


def pull(quant: str = DEFAULT_QUANT, *, cache: str | os.PathLike | None = None,
         force: bool = False, progress: bool = True) -> Path:
    """Download one model file into the cache and verify it.

    Args:
        quant: quantization label from the manifest (default ``Q4_K_M``).
        cache: cache root (default ``cache_dir()``); the file goes to ``<cache>/models/``.
        force: download again even if a verified copy is cached.
        progress: show huggingface_hub's progress bar (it still hides itself when stderr
            is not a terminal or ``HF_HUB_DISABLE_PROGRESS_BARS`` is set).

    Returns:
        Path of the verified file, ``<cache>/models/<file>``.

    Raises:
        InputError: unknown quantization, or a bad ``$LODEVEC_MANIFEST``.
        DownloadError: offline with no cached file, Hub unreachable or refusing, or the
            file does not match its expected size / SHA-256 (the bad file is deleted).
    """
    entry = entry_for(quant)
    dest_dir = models_dir(cache)
    dest = dest_dir / entry.file
    if not force and _verified_local(entry, dest):
        return dest
    if settings.hub_offline():
        state = "is not verified" if dest.exists() else "is not"
        raise DownloadError(
            f"{entry.file} {state} in the cache {dest_dir} and HF_HUB_OFFLINE is set, "
            "so it cannot be downloaded: unset HF_HUB_OFFLINE, or pass --model PATH to a GGUF file"
        )

    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = settings.hub_endpoint(DEFAULT_ENDPOINT)
    url = hf_hub_url(entry.repo, entry.file, revision=entry.revision, endpoint=endpoint)
    try:
        # No retries here: an unreachable endpoint fails in one round trip (hf_hub_download
        # alone would back off for ~20 s first).
        meta = get_hf_file_metadata(url, timeout=_METADATA_TIMEOUT, library_name="lodevec",
                                    library_version=__version__)
    except Exception as e:  # mapped by class name; the original is chained
        raise _download_error(e, entry, url, endpoint) from e

    hub_sha = _as_sha256(meta.etag)
    if entry.sha256 and hub_sha and hub_sha != entry.sha256:
        raise DownloadError(
            f"{entry.file}: sha256 mismatch: the manifest expects {entry.sha256}, the Hub "
            f"({url}) lists {hub_sha}; the file changed upstream or the mirror differs. "
            "Nothing was downloaded"
        )
    if entry.size is not None and meta.size is not None and meta.size != entry.size:
        raise DownloadError(
            f"{entry.file}: size mismatch: the manifest expects {entry.size} bytes, the Hub "
            f"({url}) lists {meta.size}. Nothing was downloaded"
        )
    sha256 = entry.sha256 or hub_sha
    if sha256 is None:
        raise DownloadError(
            f"{entry.file}: cannot be verified: the manifest has no sha256 and the Hub ({url}) "
            f"gave no LFS sha256 (ETag {meta.etag!r})"
        )
    size = entry.size if entry.size is not None else meta.size

    # A copy already in place (e.g. copied in by hand) that matches needs no download.
    if not force and dest.is_file() and (size is None or dest.stat().st_size == size):
        if sha256_file(dest) == sha256:
            _write_sidecar(dest, sha256)
            return dest

    # Download the exact commit the metadata came from, into a staging folder.
    revision = meta.commit_hash or entry.revision
    download_url = hf_hub_url(entry.repo, entry.file, revision=revision, endpoint=endpoint)
    staging = dest_dir / _STAGING
    staging.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(hf_hub_download(
            entry.repo, entry.file, revision=revision, local_dir=staging, endpoint=endpoint,
            cache_dir=settings.hf_cache(), force_download=force, library_name="lodevec",
            library_version=__version__, **_quiet_kwargs(progress, hf_hub_download),
        ))
    except Exception as e:  # mapped by class name; the original is chained
        raise _download_error(e, entry, download_url, endpoint) from e

    _check_file(got, entry.file, size, sha256, download_url)
    os.replace(got, dest)
    _write_sidecar(dest, sha256)
    return dest


# ------------------------------------------------------------------- resolution
def cached_models(cache: str | os.PathLike | None = None) -> list[Path]:
    """GGUF files in ``<cache>/models/``, newest first.

    Args:
        cache: cache root (default ``cache_dir()``).

    Returns:
        Paths of the ``*.gguf`` files (not the staging area), most recently modified first.
    """
    folder = models_dir(cache)
    try:
        found = [p for p in folder.iterdir()
                 if p.suffix.lower() == ".gguf" and not p.name.startswith(".") and p.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def _existing(model: str | os.PathLike, origin: str) -> Path:
    path = Path(model).expanduser()
    if path.is_file():
        return path
    text = os.fspath(model)
    if not path.exists() and "/" not in text and os.sep not in text:
        # A quantization label ("Q8_0") names the cached file of that quantization.
        try:
            entry = entry_for(text)
        except InputError:
            pass
        else:
            cached = models_dir() / entry.file
            if cached.is_file():
                return cached
            raise ModelNotFoundError(
                f"model {text!r}{origin} is not in the cache {models_dir()}; "
                f"run `lodevec model pull --quant {entry.quant}`"
            )
    if path.is_dir():
        raise ModelNotFoundError(f"{path}{origin} is a directory, not a GGUF file")
    raise ModelNotFoundError(f"model file not found: {path}{origin}")


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The model file to use.

    Order: ``model`` if given; else ``$LODEVEC_MODEL``; else the cached model,
    preferring ``nomic-embed-text-v1.5.Q4_K_M.gguf``, else the only / most recent one.
    ``model`` may also be a quantization label such as ``"Q8_0"`` when no file of that
    name exists: it then names the cached file of that quantization.

    Args:
        model: path of a GGUF file, or ``None``.

    Returns:
        Path of an existing file.

    Raises:
        ModelNotFoundError: the given path (or ``$LODEVEC_MODEL``) does not exist, or
            nothing was given and the cache holds no model.
    """
    if model is not None and os.fspath(model) != "":
        return _existing(model, "")
    env = settings.default_model()
    if env:
        return _existing(env, " (from $LODEVEC_MODEL)")
    found = cached_models()
    if not found:
        raise ModelNotFoundError(
            f"no model given (--model) and none in the cache {models_dir()}; "
            f"run `lodevec model pull` to download {DEFAULT_FILE}, "
            "or pass --model PATH / set $LODEVEC_MODEL"
        )
    for p in found:
        if p.name == DEFAULT_FILE:
            return p
    for p in found:
        if f".{DEFAULT_QUANT.lower()}." in p.name.lower():
            return p
    return found[0]
