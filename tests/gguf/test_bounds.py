"""Hostile model files: every declared count, length, offset and size is bounded before
use, so a bad file is a clean ModelFileError in milliseconds at bounded memory."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from conftest import MINILM_FILE, NOMIC
from gguf_edit import rewrite
from lodevec import errors
from lodevec.gguf import GGUFModel
from lodevec.gguf.header import MAX_ARRAY_ITEMS, read_header
from sandbox import run_limited

Q4 = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
VT = gguf.GGUFValueType
TOKENS = "tokenizer.ggml.tokens"


def patched(src: Path, dst: Path, *edits: tuple[int, str, object]) -> Path:
    """A copy of ``src`` with ``struct``-packed values written at byte positions."""
    data = bytearray(src.read_bytes())
    for pos, fmt, value in edits:
        struct.pack_into(fmt, data, pos, value)
    dst.write_bytes(bytes(data))
    return dst


def open_in_child(path: Path, embed: bool = False, timeout: float = 20) -> dict:
    """Open (and optionally embed "hello") in a child under a 1.5 GB address-space limit."""
    code = f"""
from lodevec import errors
from lodevec.embedding import Encoder
t = time.perf_counter()
try:
    e = Encoder.from_gguf({str(path)!r})
    if {embed!r}:
        v = e.embed("hello")
        report(outcome="ok", finite=bool((v == v).all()), s=time.perf_counter() - t)
    else:
        report(outcome="ok", s=time.perf_counter() - t)
except errors.LodevecError as ex:
    report(outcome=type(ex).__name__, message=str(ex), s=time.perf_counter() - t)
"""
    out = run_limited(code, timeout=timeout)
    assert out.returncode == 0, f"child {'hung' if out.returncode is None else 'failed'}: {out.stderr[-2000:]}"
    return out.result


# ---------------------------------------------------------------------- counts and lengths
@pytest.mark.parametrize("key", ["tokenizer.ggml.token_type", TOKENS])
def test_array_count_2_63_is_refused_fast_at_bounded_memory(tmp_path, key):
    """gguf-py's reader loops forever on a numeric array like this one (reads past the
    end return empty slices, its offset stops advancing) while RSS grows ~28 MB/s."""
    pos = read_header(Q4).fields[key].offsets["count"]
    p = patched(Q4, tmp_path / "count.gguf", (pos, "<Q", 2**63))
    res = open_in_child(p)
    assert res["outcome"] == "MetadataError", res
    assert "count.gguf" in res["message"] and key in res["message"]
    assert f"the limit is {MAX_ARRAY_ITEMS}" in res["message"]
    assert res["s"] < 1.0 and res["maxrss_mb"] < 300


def test_array_count_past_the_end_is_truncation(tmp_path):
    pos = read_header(Q4).fields[TOKENS].offsets["count"]
    p = patched(Q4, tmp_path / "count.gguf", (pos, "<Q", MAX_ARRAY_ITEMS))
    with pytest.raises(errors.TruncatedFileError, match=rf"count\.gguf: truncated: .*{TOKENS}"):
        GGUFModel.open(p)


@pytest.mark.parametrize("where, value, error, match", [
    ("key_len", 2**62, errors.MetadataError, r"metadata key length is 4611686018427387904"),
    ("tensor_count", 2**40, errors.MetadataError, r"the tensor count is 1099511627776 .*the limit is 65536"),
    ("kv_count", 2**63, errors.MetadataError, r"the metadata key count is 9223372036854775808"),
    ("kv_count", 60000, errors.ModelFileError, r"bad\.gguf: "),  # walks into the tensor table
])
def test_header_counts_are_bounded(tmp_path, where, value, error, match):
    h = read_header(Q4)
    pos = h.offsets[where] if where in h.offsets else h.fields["general.name"].offsets[where]
    p = patched(Q4, tmp_path / "bad.gguf", (pos, "<Q", value))
    t = time.perf_counter()
    with pytest.raises(error, match=match):
        GGUFModel.open(p)
    assert time.perf_counter() - t < 1.0


def test_unknown_value_type(tmp_path):
    pos = read_header(Q4).fields["general.name"].offsets["type"]
    p = patched(Q4, tmp_path / "vt.gguf", (pos, "<I", 77))
    with pytest.raises(errors.MetadataError, match=r"metadata key general\.name has value type 77"):
        GGUFModel.open(p)


# ---------------------------------------------------------------------- the tensor table
def _tensor(name: str):
    return next(t for t in read_header(Q4).tensors if t.name == name)


@pytest.mark.parametrize("field, fmt, value, error, match", [
    ("n_dims", "<I", 5, errors.TensorShapeError, r"has 5 dimensions; expected 1\.\.4"),
    ("n_dims", "<I", 2**31, errors.TensorShapeError, r"dimensions; expected 1\.\.4"),
    ("type", "<I", 99, errors.UnsupportedTensorTypeError, r"unknown GGML type id 99"),
    ("offset", "<Q", 2**62, errors.TruncatedFileError, r"truncated: tensor blk\.0\.attn_qkv\.weight needs"),
    ("offset", "<Q", 2**64 - 32, errors.TruncatedFileError, r"truncated: tensor blk\.0\.attn_qkv\.weight"),
])
def test_tensor_info_is_bounded(tmp_path, field, fmt, value, error, match):
    t = _tensor("blk.0.attn_qkv.weight")
    p = patched(Q4, tmp_path / "t.gguf", (t.offsets[field], fmt, value))
    with pytest.raises(error, match=match):
        GGUFModel.open(p)


def test_tensor_dims_zero_and_overflow(tmp_path):
    t = _tensor("blk.0.attn_qkv.weight")
    dims_at = t.offsets["n_dims"] + 4
    for i, value in enumerate((0, 2**63)):
        p = patched(Q4, tmp_path / f"d{i}.gguf", (dims_at + 8, "<Q", value))
        with pytest.raises(errors.TensorShapeError, match=r"each must be >= 1 and their product"):
            GGUFModel.open(p)


def test_unaligned_tensor_offset(tmp_path):
    t = _tensor("blk.0.attn_qkv.weight")
    p = patched(Q4, tmp_path / "unaligned.gguf", (t.offsets["offset"], "<Q", t.offset + 1))
    with pytest.raises(errors.TensorOffsetError, match=r"attn_qkv\.weight: data offset \d+ is not aligned to 32"):
        GGUFModel.open(p)


def test_overlapping_tensor_offsets(tmp_path):
    """Pointing one tensor into another's bytes loaded, and gave wrong vectors silently."""
    a, b = _tensor("blk.0.attn_qkv.weight"), _tensor("blk.1.attn_qkv.weight")
    p = patched(Q4, tmp_path / "overlap.gguf", (b.offsets["offset"], "<Q", a.offset))
    with pytest.raises(errors.TensorOffsetError, match=r"overlap\.gguf: tensor blk\.[01]\.attn_qkv\.weight .* overlaps tensor"):
        GGUFModel.open(p)


@pytest.mark.parametrize("qtype", ["F32", "Q2_K"])
def test_tensor_type_changed(tmp_path, qtype):
    """A type id edited to another known type no longer matches the bytes in the file:
    more bytes overlap the next tensor, fewer leave a gap (it loaded before)."""
    t = _tensor("blk.0.attn_qkv.weight")
    assert t.tensor_type.name not in ("F32", "Q2_K")
    p = patched(Q4, tmp_path / "type.gguf", (t.offsets["type"], "<I", int(gguf.GGMLQuantizationType[qtype])))
    with pytest.raises(errors.TensorOffsetError, match=r"type\.gguf: tensor .*blk\.0\.attn_qkv\.weight"):
        GGUFModel.open(p)


# ---------------------------------------------------------------------- config sanity
@pytest.mark.parametrize("key, value, vtype, match", [
    ("nomic-bert.context_length", 8_388_608, VT.UINT32, r"context_length=8388608; expected an integer in 1\.\.1048576"),
    ("nomic-bert.context_length", 2**31 - 1, VT.UINT32, r"context_length=2147483647"),
    ("nomic-bert.attention.layer_norm_epsilon", float("nan"), VT.FLOAT32, r"layer_norm_epsilon=nan; expected a finite number > 0"),
    ("nomic-bert.attention.layer_norm_epsilon", 0.0, VT.FLOAT32, r"layer_norm_epsilon=0\.0"),
    ("nomic-bert.rope.freq_base", float("inf"), VT.FLOAT32, r"freq_base=inf; expected a finite number > 0"),
    ("nomic-bert.rope.freq_base", -1.0, VT.FLOAT32, r"freq_base=-1\.0"),
    ("nomic-bert.block_count", 100_000, VT.UINT32, r"block_count=100000; expected an integer in 1\.\.1024"),
    ("nomic-bert.embedding_length", 2**20, VT.UINT32, r"embedding_length=1048576; expected an integer in 1\.\.65536"),
    ("nomic-bert.attention.head_count", 128, VT.UINT32, r"head size 2 \(256 / 128 heads\) must be even and >= 4"),
])
def test_config_out_of_range(tmp_path, key, value, vtype, match):
    p = rewrite(Q4, tmp_path / "cfg.gguf", kv={key: (value, vtype)})
    with pytest.raises(errors.MetadataError, match=r"cfg\.gguf: .*" + match):
        GGUFModel.open(p)


def test_bert_context_longer_than_position_table(tmp_path):
    """It loaded, then texts past 512 tokens failed with an IndexError in the kernel."""
    p = rewrite(MINILM_FILE, tmp_path / "ctx.gguf", kv={"bert.context_length": (1024, VT.UINT32)})
    with pytest.raises(errors.MetadataError,
                       match=r"ctx\.gguf: metadata key bert\.context_length=1024 exceeds the 512 rows of "
                             r"tensor position_embd\.weight; expected at most 512"):
        GGUFModel.open(p)


def test_large_valid_context_embeds_at_small_memory(tmp_path):
    """Rope tables are sized by the input: "hello" with a 2^20 context took ~0.4 GB more
    (3.2 GB at 8,388,608, now refused), now what a 2048 context takes."""
    p = rewrite(Q4, tmp_path / "ctx.gguf", kv={"nomic-bert.context_length": (2**20, VT.UINT32)})
    res = open_in_child(p, embed=True)
    assert res["outcome"] == "ok" and res["finite"], res
    assert res["maxrss_mb"] < 200, res


def test_rope_tables_sized_by_input_and_bit_identical():
    from lodevec.embedding import Encoder

    enc = Encoder.from_gguf(Q4)
    b, cfg = enc.backend, enc.config
    d = cfg.head_dim
    inv = (1.0 / (np.float32(cfg.rope_base) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))).astype(np.float32)
    freqs = np.outer(np.arange(cfg.context_length, dtype=np.float32), inv).astype(np.float32)
    for n in (1, 2, 7, 63, 64, 65, 300, 1024, 2047, 2048):
        b._rope_cache.clear()
        cos, sin = b.rope(n)
        assert np.array_equal(cos, np.cos(freqs[:n])) and np.array_equal(sin, np.sin(freqs[:n]))
        assert all(k[0] <= max(64, 2 * n) for k in b._rope_cache)


# ---------------------------------------------------------------------- non-finite outputs
def test_nan_weights_are_an_error_not_a_vector(tmp_path):
    """14 of 305 fuzzed files gave NaN embeddings with exit 0 before."""
    h = read_header(MINILM_FILE)
    t = next(t for t in h.tensors if t.name == "blk.0.ffn_up.weight")
    data = bytearray(MINILM_FILE.read_bytes())
    start = h.data_offset + t.offset
    data[start:start + t.n_bytes] = np.full(t.n_bytes // 2, np.nan, dtype=np.float16).tobytes()
    p = tmp_path / "nan.gguf"
    p.write_bytes(bytes(data))
    from lodevec.embedding import Encoder

    enc = Encoder.from_gguf(p)
    with pytest.raises(errors.NonFiniteEmbeddingError,
                       match=r"nan\.gguf: the model gave a non-finite vector for text 0 "
                             r"\('hello world', 2 of 2 texts affected\)"):
        enc.embed(["hello world", "another text"])
    with pytest.raises(errors.NonFiniteEmbeddingError) as info:
        enc.encode(["a", "b"])
    assert isinstance(info.value, errors.ModelFileError)
    assert json.dumps(str(info.value))


def test_special_token_that_breaks_the_tokenizer_template(tmp_path):
    """Found by the fuzzer: a [CLS] id edited to the token "▁:" gave a ValueError traceback."""
    colon = read_header(Q4).fields[TOKENS].contents().index("▁:")
    p = rewrite(Q4, tmp_path / "cls.gguf", kv={"tokenizer.ggml.bos_token_id": (colon, VT.UINT32)})
    with pytest.raises(errors.MetadataError, match=r"cls\.gguf: tokenizer\.ggml\.bos_token_id=\d+ names token '▁:'"):
        GGUFModel.open(p)
