"""Tests of lodevec.kernels (and the compiled kernels behind it).

Dequantization is compared bit for bit with gguf-py's numpy reference
(``gguf.quants.dequantize``); matmul with a float64 product of the reference
dequantization; ops with float64 numpy.
"""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import gguf.quants
import numpy as np
import pytest
from isa_levels import isa_level  # noqa: F401  (autouse: every test at every ISA level)

from lodevec import kernels
from lodevec.gguf.constants import BLOCK_SIZE, SUPPORTED_TYPES, TYPE_SIZE, GGMLQuantizationType
from lodevec.gguf.tensors import QuantTensor
from lodevec.kernels import runtime

T = GGMLQuantizationType
FIXTURES = Path(__file__).parents[1] / "fixtures"
QUANT_TYPES = [t for t in SUPPORTED_TYPES if t not in (T.F32, T.F16)]

# Byte offsets of the f16 scale fields inside one block (from the GGML block
# layouts); tests overwrite them with finite f16 values so no block holds NaN/inf.
F16_FIELDS: dict[GGMLQuantizationType, tuple[int, ...]] = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
}


def random_raw(qtype: GGMLQuantizationType, rows: int, cols: int, rng: np.random.Generator,
               *, zero: bool = False, scale: float = 1.0) -> np.ndarray:
    """Random GGML rows: random bytes, f16 fields replaced by finite f16 values."""
    blk, size = BLOCK_SIZE[qtype], TYPE_SIZE[qtype]
    if zero:
        return np.zeros((rows, cols // blk * size), dtype=np.uint8)
    if qtype == T.F32:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16).view(np.uint8)
    nb = cols // blk
    raw = rng.integers(0, 256, size=(rows, nb, size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        vals = (rng.standard_normal((rows, nb)) * scale).astype(np.float16)
        raw[:, :, off:off + 2] = vals.view(np.uint8).reshape(rows, nb, 2)
    return raw.reshape(rows, nb * size)


def memmapped(tmp_path: Path, raw: np.ndarray) -> np.ndarray:
    """``raw`` written to a file and mapped back read-only (as model weights are)."""
    path = tmp_path / f"w{np.random.default_rng().integers(1 << 30)}.bin"
    raw.tofile(path)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=raw.shape)


def cols_for(qtype: GGMLQuantizationType, nblocks: int = 3) -> int:
    return 101 if BLOCK_SIZE[qtype] == 1 else BLOCK_SIZE[qtype] * nblocks


# ------------------------------------------------------------------ dequantize
@pytest.mark.parametrize("rows", [1, 7, 97])
@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_dequantize_bit_exact(qtype, rows, threads, tmp_path):
    rng = np.random.default_rng(rows * 100 + int(qtype))
    cols = cols_for(qtype)
    raw = memmapped(tmp_path, random_raw(qtype, rows, cols, rng))
    t = QuantTensor("w", qtype, rows, cols, raw)
    got = kernels.dequantize(t)
    ref = gguf.quants.dequantize(np.asarray(raw), qtype)
    assert got.dtype == np.float32 and got.shape == (rows, cols)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_dequantize_zero_blocks(qtype):
    cols = cols_for(qtype, 2)
    raw = random_raw(qtype, 5, cols, np.random.default_rng(0), zero=True)
    got = kernels.dequantize(QuantTensor("zero", qtype, 5, cols, raw))
    assert np.array_equal(got, gguf.quants.dequantize(raw, qtype))
    assert not np.any(got)


def test_f16_conversion_every_bit_pattern():
    """All 65536 halves (normals, subnormals, +-0, +-inf, NaNs) convert exactly."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = kernels.dequantize(QuantTensor.from_array("f16", T.F16, bits, 1 << 16))[0]
    ref = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))  # signed zeros too


@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q6_K, T.F16], ids=lambda t: t.name)
def test_scalar_and_vector_dequant_agree(qtype):
    """The AVX code paths and the scalar fallback give the same bits."""
    cols = cols_for(qtype, 4)
    raw = random_raw(qtype, 33, cols, np.random.default_rng(5))
    a = np.empty((33, cols), np.float32)
    b = np.empty((33, cols), np.float32)
    runtime.compiled.quant.dequantize_rows(int(qtype), raw, cols, a, 1, True)
    runtime.compiled.quant.dequantize_rows(int(qtype), raw, cols, b, 1, False)
    assert np.array_equal(a, b)
    assert np.array_equal(a, gguf.quants.dequantize(raw, qtype))


def test_dequantize_raw_matches_tensor_path():
    rng = np.random.default_rng(3)
    raw = random_raw(T.Q8_0, 6, 64, rng)
    got = kernels.dequantize(QuantTensor.from_array("raw", T.Q8_0, raw.reshape(-1), 64))
    assert got.shape == (6, 64)
    assert np.array_equal(got, gguf.quants.dequantize(raw, T.Q8_0))
    with pytest.raises(ValueError, match="whole number"):
        QuantTensor.from_array("raw", T.Q8_0, raw.reshape(-1)[:-1], 64)


@pytest.mark.parametrize("fixture", [
    "nomic-tiny/tiny-nomic-v1.5.Q4_K_M.gguf",
    "nomic-tiny/tiny-nomic-v1.5.Q8_0.gguf",
    "minilm/all-MiniLM-L6-v2.f16.gguf",
])
def test_dequantize_real_model_tensors(fixture):
    """Every tensor of the shipped GGUF fixtures, memory-mapped by gguf's reader."""
    path = FIXTURES / fixture
    if not path.exists():
        pytest.skip(f"{fixture} not present")
    reader = gguf.GGUFReader(path)
    checked = 0
    for rt in reader.tensors:
        cols = int(rt.shape[0])
        t = QuantTensor.from_array(rt.name, T(rt.tensor_type), rt.data, cols)
        ref = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type).reshape(t.rows, cols)
        assert np.array_equal(kernels.dequantize(t), ref), rt.name
        checked += 1
    assert checked > 0


# -------------------------------------------------------------------- get_rows
@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q6_K, T.Q8_0, T.F16, T.F32, T.Q5_1],
                         ids=lambda t: t.name)
def test_get_rows(qtype, threads, tmp_path):
    rng = np.random.default_rng(11)
    cols = cols_for(qtype, 2)
    raw = memmapped(tmp_path, random_raw(qtype, 97, cols, rng))
    t = QuantTensor("token_embd.weight", qtype, 97, cols, raw)
    ids = np.array([0, 96, 5, 5, 42, 1], dtype=np.int32)
    got = kernels.get_rows(t, ids)
    ref = gguf.quants.dequantize(np.asarray(raw), qtype)[ids]
    assert np.array_equal(got, ref)
    assert kernels.get_rows(t, np.array([], dtype=np.int64)).shape == (0, cols)


@pytest.mark.parametrize("bad", [-1, 97, 1 << 40])
def test_get_rows_out_of_range(bad):
    raw = random_raw(T.Q8_0, 97, 32, np.random.default_rng(0))
    t = QuantTensor("token_embd.weight", T.Q8_0, 97, 32, raw)
    with pytest.raises(IndexError, match=rf"token_embd\.weight.*{bad}"):
        kernels.get_rows(t, np.array([0, bad], dtype=np.int64))
    with pytest.raises(IndexError):  # the compiled kernel checks on its own too
        runtime.compiled.quant.get_rows(int(T.Q8_0), raw, 32, np.array([bad], dtype=np.int64),
                        np.empty((1, 32), np.float32))


def test_get_rows_rejects_non_integer_ids():
    raw = random_raw(T.Q8_0, 4, 32, np.random.default_rng(0))
    t = QuantTensor("emb", T.Q8_0, 4, 32, raw)
    with pytest.raises(ValueError, match="emb: ids"):
        kernels.get_rows(t, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="emb: ids"):
        kernels.get_rows(t, np.zeros((2, 2), dtype=np.int64))


# ------------------------------------------------------------ malformed input
def test_truncated_data_rejected_before_kernel():
    raw = random_raw(T.Q4_K, 8, 512, np.random.default_rng(0))
    short = raw.reshape(-1)[: raw.size - 1]  # one byte short of 8 rows
    t = QuantTensor("blk.0.ffn_up.weight", T.Q4_K, 8, 512, short)
    x = np.ones((2, 512), np.float32)
    for call in (lambda: kernels.dequantize(t), lambda: kernels.get_rows(t, np.array([7])),
                 lambda: kernels.matmul(x, t)):
        with pytest.raises(ValueError, match=r"blk\.0\.ffn_up\.weight.*bytes"):
            call()
    fewer_rows = QuantTensor("w", T.Q4_K, 8, 512, raw[:7])
    with pytest.raises(ValueError, match="expected 8 rows"):
        kernels.dequantize(fewer_rows)


def test_compiled_kernels_check_sizes_themselves():
    raw = random_raw(T.Q4_K, 4, 256, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bytes"):
        runtime.compiled.quant.dequantize_rows(int(T.Q4_K), raw[:, :-1].copy(), 256, np.empty((4, 256), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        runtime.compiled.quant.dequantize_rows(int(T.Q4_K), raw, 256, np.empty((3, 256), np.float32))
    with pytest.raises(ValueError, match="columns"):
        runtime.compiled.matmul.matmul_q(np.ones((1, 128), np.float32), int(T.Q4_K), raw, 256, None,
                     np.empty((1, 4), np.float32))


def test_bad_tensor_metadata():
    raw = random_raw(T.Q8_0, 2, 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="block size"):
        kernels.dequantize(QuantTensor("w", T.Q8_0, 2, 48, raw))
    with pytest.raises(ValueError, match="not supported"):
        kernels.dequantize(QuantTensor("w", T.IQ2_XXS, 2, 256, raw))
    with pytest.raises(ValueError, match="uint8"):
        kernels.dequantize(QuantTensor("w", T.Q8_0, 2, 64, raw.view(np.int8)))
    with pytest.raises(ValueError, match="QuantTensor"):
        kernels.dequantize(raw)


# ---------------------------------------------------------------------- matmul
def _check_matmul(out, x, w_f32, bias):
    ref = x.astype(np.float64) @ w_f32.astype(np.float64).T
    if bias is not None:
        ref += bias
    # float32 dot-product error scales with |x_i| |w_j| (Cauchy-Schwarz), not with |ref|
    scale = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w_f32, axis=1)[None, :]
    scale = scale + (np.abs(bias)[None, :] if bias is not None else 0.0) + 1e-30
    err = np.abs(out - ref) / scale
    assert out.dtype == np.float32
    assert err.max() < 1e-5, err.max()


@pytest.fixture
def exact_matmul():
    """The exact f32 matmul path for every type (the int8-activation path of Q4_K /
    Q6_K / Q8_0 is tested against its own tolerance in test_int8.py)."""
    before = kernels.get_matmul_mode()
    kernels.set_matmul_mode("f32")
    yield
    kernels.set_matmul_mode(before)


@pytest.mark.parametrize("n", [1, 5, 23, 24, 40])
@pytest.mark.parametrize("rows", [1, 7, 97])
@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_matmul_matches_reference(qtype, rows, n, threads, tmp_path, exact_matmul):
    rng = np.random.default_rng(1000 * rows + n)
    cols = cols_for(qtype, 2)
    raw = memmapped(tmp_path, random_raw(qtype, rows, cols, rng, scale=0.05))
    w = QuantTensor("blk.0.attn_qkv.weight", qtype, rows, cols, raw)
    x = rng.standard_normal((n, cols)).astype(np.float32)
    bias = rng.standard_normal(rows).astype(np.float32) if n % 2 else None
    got = kernels.matmul(x, w, bias)
    assert got.shape == (n, rows)
    _check_matmul(got, x, gguf.quants.dequantize(np.asarray(raw), qtype), bias)


@pytest.mark.parametrize("path", [1, 2])
@pytest.mark.parametrize("shape", [(1, 768, 768), (17, 300, 512), (64, 96, 768), (131, 13, 256)])
def test_matmul_kernel_paths(path, shape, threads):
    """Both micro-kernels (dot / panel), with odd tiles, against the reference."""
    n, m, k = shape
    rng = np.random.default_rng(n + m + k)
    raw = random_raw(T.Q4_K, m, k, rng, scale=0.05)
    x = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    w_f32 = gguf.quants.dequantize(raw, T.Q4_K)
    for tile in (0, 5, 13):
        out = np.full((n, m), np.nan, np.float32)
        runtime.compiled.matmul.matmul_q(x, int(T.Q4_K), raw, k, bias, out, threads, path=path, tile=tile)
        _check_matmul(out, x, w_f32, bias)


def test_matmul_f32_odd_width_and_out():
    """F32 weights are used in place (no copy); K not a multiple of the vector width."""
    rng = np.random.default_rng(9)
    for k in (1, 3, 17, 33):
        w_f32 = rng.standard_normal((11, k)).astype(np.float32)
        w = QuantTensor.from_array("w", T.F32, w_f32, k)
        for n in (1, 4, 30):
            x = rng.standard_normal((n, k)).astype(np.float32)
            out = np.empty((n, 11), np.float32)
            assert kernels.matmul(x, w, None, out=out) is out
            _check_matmul(out, x, w_f32, None)


def test_matmul_empty_shapes():
    rng = np.random.default_rng(6)
    raw = random_raw(T.Q8_0, 5, 64, rng)
    w = QuantTensor("w", T.Q8_0, 5, 64, raw)
    assert kernels.matmul(np.zeros((0, 64), np.float32), w).shape == (0, 5)
    empty = QuantTensor("w0", T.Q8_0, 0, 64, raw[:0])
    assert kernels.matmul(np.ones((3, 64), np.float32), empty).shape == (3, 0)
    assert kernels.dequantize(empty).shape == (0, 64)
    with pytest.raises(IndexError, match="w0"):
        kernels.get_rows(empty, np.array([0]))


def test_matmul_threads_agree():
    rng = np.random.default_rng(4)
    raw = random_raw(T.Q6_K, 200, 512, rng, scale=0.05)
    w = QuantTensor("w", T.Q6_K, 200, 512, raw)
    x = rng.standard_normal((50, 512)).astype(np.float32)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        a = kernels.matmul(x, w)
        kernels.set_num_threads(2)
        b = kernels.matmul(x, w)
    finally:
        kernels.set_num_threads(before)
    assert np.array_equal(a, b)  # each output is computed by exactly one thread


def test_matmul_validation():
    rng = np.random.default_rng(0)
    raw = random_raw(T.Q4_K, 8, 256, rng)
    w = QuantTensor("blk.3.ffn_gate.weight", T.Q4_K, 8, 256, raw)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    with pytest.raises(ValueError, match=r"ffn_gate.*x has 128 columns.*expects 256"):
        kernels.matmul(np.ones((4, 128), np.float32), w)
    with pytest.raises(ValueError, match=r"ffn_gate.*float32.*got float64"):
        kernels.matmul(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"non-contiguous"):
        kernels.matmul(np.ones((4, 512), np.float32)[:, ::2], w)
    with pytest.raises(ValueError, match=r"x: expected a C-contiguous 2-D"):
        kernels.matmul(x[0], w)
    with pytest.raises(ValueError, match=r"bias: expected 8 elements, got 7"):
        kernels.matmul(x, w, np.ones(7, np.float32))
    with pytest.raises(ValueError, match=r"out has shape"):
        kernels.matmul(x, w, out=np.empty((4, 9), np.float32))
    with pytest.raises(ValueError, match=r"out: expected"):
        kernels.matmul(x, w, out=np.empty((4, 8), np.float64))
    xo = np.zeros(4 * 256 + 32, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        kernels.matmul(xo[:1024].reshape(4, 256), w, out=xo[1024 - 16:1024 + 16].reshape(4, 8))


# ------------------------------------------------------------------------- ops
def _ln_ref(x, w, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


SIZES = [(97, 101), (257, 300)]  # the second is big enough to run on 2 threads


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, affine, threads):
    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32) if affine else None
    b = rng.standard_normal(shape[1]).astype(np.float32) if affine else None
    got = kernels.layer_norm(x, w, b, 1e-12)
    np.testing.assert_allclose(got, _ln_ref(x, w, b, 1e-12), rtol=1e-5, atol=1e-5)
    xc = x.copy()
    assert kernels.layer_norm(xc, w, b, 1e-12, out=xc) is xc
    np.testing.assert_array_equal(xc, got)


@pytest.mark.parametrize("shape", SIZES)
def test_add_layer_norm(shape, threads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    ref = _ln_ref((x + r), w, b, 1e-5)
    out = kernels.add_layer_norm(x, r, w, b, 1e-5)
    assert out is x
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-5)


def test_layer_norm_threads_identical():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 500)).astype(np.float32)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        a = kernels.layer_norm(x, None, None, 1e-5)
        kernels.set_num_threads(2)
        b = kernels.layer_norm(x, None, None, 1e-5)
    finally:
        kernels.set_num_threads(before)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", SIZES)
def test_gelu(shape, threads):
    from scipy.special import erf

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x[0, :4] = [0.0, -0.0, 30.0, -30.0]
    xd = x.astype(np.float64)
    ref = 0.5 * xd * (1 + erf(xd / math.sqrt(2)))
    assert kernels.gelu(x) is x
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SIZES)
def test_swiglu(shape, threads):
    rng = np.random.default_rng(2)
    g = (rng.standard_normal(shape) * 4).astype(np.float32)
    u = rng.standard_normal(shape).astype(np.float32)
    g[0, :2] = [-100.0, 100.0]
    gd = g.astype(np.float64)
    ref = u.astype(np.float64) * gd / (1 + np.exp(-gd))
    out = kernels.swiglu(g, u)
    assert out is u
    np.testing.assert_allclose(u, ref, rtol=1e-6, atol=1e-7)
    assert np.isfinite(u).all()


@pytest.mark.parametrize("shape", SIZES)
def test_l2_normalize(shape, threads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(np.float32)
    x[3] = 0.0
    got = kernels.l2_normalize(x)
    assert got is not x
    xd = x.astype(np.float64)
    norms = np.linalg.norm(xd, axis=1, keepdims=True)
    ref = np.divide(xd, norms, out=np.zeros_like(xd), where=norms > 0)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    assert not got[3].any()
    v = kernels.l2_normalize(x[5].copy())
    assert v.shape == (shape[1],)
    np.testing.assert_allclose(v, ref[5], rtol=1e-6, atol=1e-7)


def test_ops_validation():
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"layer_norm: x: expected .*float32.*got float64"):
        kernels.layer_norm(x.astype(np.float64), None, None, 1e-5)
    with pytest.raises(ValueError, match=r"layer_norm: weight: expected 8 elements, got 7"):
        kernels.layer_norm(x, np.ones(7, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match=r"bias given without weight"):
        kernels.layer_norm(x, None, np.ones(8, np.float32), 1e-5)
    with pytest.raises(ValueError, match=r"add_layer_norm: residual has shape"):
        kernels.add_layer_norm(x, np.ones((4, 9), np.float32), None, None, 1e-5)
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        kernels.gelu(ro)
    with pytest.raises(ValueError, match=r"swiglu: gate has shape"):
        kernels.swiglu(np.ones((4, 9), np.float32), x)
    with pytest.raises(ValueError, match=r"non-contiguous"):
        kernels.swiglu(np.ones((4, 16), np.float32)[:, ::2], x)
    with pytest.raises(ValueError, match=r"l2_normalize: x"):
        kernels.l2_normalize(np.ones((2, 3, 4), np.float32))


# --------------------------------------------------------------------- threads
def test_threads_api():
    before = kernels.get_num_threads()
    try:
        assert isinstance(kernels.openmp_enabled(), bool)
        kernels.set_num_threads(2)
        assert kernels.get_num_threads() == (2 if kernels.openmp_enabled() else 1)
        kernels.set_num_threads(1)
        assert kernels.get_num_threads() == 1
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError):
                kernels.set_num_threads(bad)
        assert kernels.get_num_threads() == 1
    finally:
        kernels.set_num_threads(before)
    info = kernels.kernel_info()
    assert info["isa"] == runtime.compiled.level
    assert info["isa"] in info["levels"]
    assert info["simd"] in ("avx512", "avx2", "scalar")
    assert info["openmp"] == kernels.openmp_enabled()


def test_threads_per_call_leave_the_process_count_alone():
    """A backend passes its own count per call; results equal the process-count path."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((97, 256)).astype(np.float32)
    raw = random_raw(T.Q8_0, 101, 256, rng)
    w = QuantTensor("w", T.Q8_0, 101, 256, raw)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        ref = kernels.matmul(x, w)
        for n in (1, 2):
            np.testing.assert_array_equal(kernels.matmul(x, w, threads=n), ref)
            np.testing.assert_array_equal(kernels.l2_normalize(x, threads=n), kernels.l2_normalize(x))
        assert kernels.get_num_threads() == 1
    finally:
        kernels.set_num_threads(before)
