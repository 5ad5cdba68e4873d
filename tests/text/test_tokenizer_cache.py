"""The tokenizer kept per vocabulary digest, and the file digest kept per model file:
loaded when valid, rebuilt when the model's vocabulary differs or the cache file is
damaged, never trusted."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import MINILM, MINILM_FILE, NOMIC, load_golden
from lodevec.digests import digest_entry, file_digest
from lodevec.gguf import GGUFModel
from lodevec.hub import sha256_file
from lodevec.text import tokenizer_cache
from lodevec.text.tokenizer import WordPieceTokenizer, build_tokenizer, vocab_digest
from lodevec.text.tokenizer_cache import cache_path, cached_tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LODEVEC_CACHE", str(root))
    return root


class Builds:
    """``build`` for :func:`cached_tokenizer` that counts how often it really builds."""

    def __init__(self, model):
        self.model, self.n = model, 0

    def __call__(self):
        self.n += 1
        return build_tokenizer(self.model)


def golden_texts() -> list[str]:
    return [t["text"] for t in load_golden(MINILM / "golden.json")["texts"]]


def test_cached_tokenizer_equals_built_one(cache):
    model = GGUFModel.open(MINILM_FILE)
    builds = Builds(model)
    first = cached_tokenizer(vocab_digest(model), builds)
    assert builds.n == 1 and cache_path(vocab_digest(model)).is_file()
    again = cached_tokenizer(vocab_digest(model), builds)
    assert builds.n == 1  # loaded, not rebuilt
    texts = golden_texts() + ["hello [SEP] world", "Ünïcödé  ta\tbs", "日本語のテキスト"]
    built = build_tokenizer(model)
    for t in texts:
        want = built.encode(t)
        for tk in (first, again):
            got = tk.encode(t)
            assert got.ids == want.ids and got.offsets == want.offsets
    # the facade goes through the cache too, and gives the reference ids
    ref = load_golden(MINILM / "golden.json")["texts"]
    tok = WordPieceTokenizer(model, max_tokens=100_000)
    assert [tok.encode(t["text"]).ids for t in ref] == [t["ids"] for t in ref]


def test_another_vocabulary_is_another_entry(cache, tmp_path):
    import gguf

    from gguf_edit import rewrite

    minilm = GGUFModel.open(MINILM_FILE)
    # the same vocabulary in a file that differs by one byte of its weights: another file
    # digest, the same tokenizer, so the same entry (built once)
    copy = tmp_path / "minilm-copy.gguf"
    shutil.copyfile(MINILM_FILE, copy)
    with open(copy, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    same = GGUFModel.open(copy)
    assert same.digest != minilm.digest and vocab_digest(same) == vocab_digest(minilm)
    # what the build reads changed: the lowercase flag, or another vocabulary altogether
    cased = GGUFModel.open(rewrite(MINILM_FILE, tmp_path / "cased.gguf", kv={
        "tokenizer.ggml.normalizer.lowercase": (False, gguf.GGUFValueType.BOOL)}))
    nomic = GGUFModel.open(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    keys = {vocab_digest(m) for m in (minilm, cased, nomic)}
    assert len(keys) == 3
    counts = {}
    for m in (minilm, same, cased, nomic):
        builds = Builds(m)
        tk = cached_tokenizer(vocab_digest(m), builds)
        counts[m.path.name] = builds.n
        assert tk.encode("Hello World").ids == build_tokenizer(m).encode("Hello World").ids
    assert counts == {MINILM_FILE.name: 1, "minilm-copy.gguf": 0, "cased.gguf": 1,
                      "tiny-nomic-v1.5.f16.gguf": 1}
    assert {p.name for p in (cache / "tokenizers").iterdir()} == {cache_path(k).name for k in keys}
    # the cased vocabulary really tokenizes otherwise (its entry is not the uncased one)
    assert (cached_tokenizer(vocab_digest(cased), Builds(cased)).encode("Hello").ids
            != cached_tokenizer(vocab_digest(minilm), Builds(minilm)).encode("Hello").ids)
    # an entry names its digest inside too: copied under another digest, it is not read
    shutil.copyfile(cache_path(vocab_digest(minilm)), cache_path(vocab_digest(cased)))
    builds = Builds(cased)
    cached_tokenizer(vocab_digest(cased), builds)
    assert builds.n == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty", "not-json", "magic"])
def test_damaged_entry_is_rebuilt_not_trusted(cache, damage):
    model = GGUFModel.open(MINILM_FILE)
    builds = Builds(model)
    cached_tokenizer(vocab_digest(model), builds)
    path = cache_path(vocab_digest(model))
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n")
    if damage == "flip":  # one token of the vocabulary changed: still valid JSON
        at = body.index(b'"hello"')
        body = body[:at] + b'"hellp"' + body[at + 7:]
        assert json.loads(body)
        raw = head + b"\n" + body
    elif damage == "truncate":
        raw = raw[:len(raw) // 2]
    elif damage == "header":
        raw = head[:-4] + b"0000\n" + body
    elif damage == "empty":
        raw = b""
    elif damage == "not-json":  # the checksum matches, the library cannot load it
        import hashlib

        body = b"{not json"
        raw = head.rsplit(b" ", 1)[0] + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    elif damage == "magic":
        raw = b"something-else" + raw[len(b"lodevec-tokenizer"):]
    path.write_bytes(raw)
    tk = cached_tokenizer(vocab_digest(model), builds)
    assert builds.n == 2  # rebuilt
    assert tk.encode("hello world").ids == build_tokenizer(model).encode("hello world").ids
    assert path.read_bytes().partition(b"\n")[2] == build_tokenizer(model).to_str().encode()
    cached_tokenizer(vocab_digest(model), builds)
    assert builds.n == 2  # the rewritten entry is good again


def test_unwritable_cache_still_builds(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LODEVEC_CACHE", str(blocker))
    model = GGUFModel.open(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    builds = Builds(model)
    assert cached_tokenizer(vocab_digest(model), builds).encode("hi").ids == [101, 7632, 102]
    assert cached_tokenizer(vocab_digest(model), builds) is not None and builds.n == 2
    assert tokenizer_cache.cache_path(vocab_digest(model)).parent.parent == blocker


def test_digest_cache_follows_the_file(cache, tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copyfile(NOMIC / "tiny-nomic-v1.5.f16.gguf", path)
    d1 = file_digest(path)
    assert d1 == sha256_file(path)
    entry = digest_entry(path)
    assert json.loads(entry.read_text())["sha256"] == d1
    assert file_digest(path) == d1
    # rewritten in place with the same size and modification time: hashed again
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    d2 = file_digest(path)
    assert d2 == sha256_file(path) != d1
    # a damaged entry, or one claiming another digest for other stat values, is not used
    for bad in ("{", json.dumps({"path": os.path.realpath(path), "stat": [0, 0, 0, 0, 0],
                                 "sha256": "0" * 64}), json.dumps([1, 2])):
        entry.write_text(bad)
        assert file_digest(path) == d2
    # what the model reports is the cached digest of its own file
    assert GGUFModel.open(path).digest == d2
