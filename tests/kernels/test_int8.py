"""The int8-activation matmul (qmatmul.pyx / lv_q8.h, the llama.cpp scheme).

x is quantized per row into int8 blocks of 256 with one f32 scale (|x|max / 127),
so each product x_e w_e carries an error of at most |w_e| d_x / 2 per element:
|err_ij| <= (d_x / 2) sum |w_j| <= ~(|x_i|max / 254) sqrt(K) |w_j| -- in practice
(rounding errors are independent, ~uniform) ~ 1e-3 |x_i| |w_j|.  The tests bound
the error per output by 1e-2 |x_i| |w_j| (and 3e-3 on average).
"""

from __future__ import annotations

import gguf.quants
import numpy as np
import pytest
from isa_levels import isa_level  # noqa: F401  (autouse: every test at every ISA level)
from test_kernels import memmapped, random_raw

from lodevec import kernels
from lodevec.gguf.constants import TYPE_SIZE, GGMLQuantizationType
from lodevec.gguf.tensors import QuantTensor
from lodevec.kernels import runtime

T = GGMLQuantizationType
INT8_TYPES = [T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_0]


@pytest.fixture(autouse=True)
def auto_mode(request):
    compiled = request.getfixturevalue("isa_level")   # set up first: the level under test
    if not compiled.int8:
        pytest.skip(f"no int8 kernels at the {compiled.level} level")
    before = kernels.get_matmul_mode()
    kernels.set_matmul_mode("auto")
    yield
    kernels.set_matmul_mode(before)


def _rel_err(out, x, w_f32, bias):
    ref = x.astype(np.float64) @ w_f32.astype(np.float64).T
    if bias is not None:
        ref += bias
    scale = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w_f32, axis=1)[None, :] + 1e-30
    return np.abs(out - ref) / scale


def _run(x, w, bias, threads):
    before = kernels.get_num_threads()
    kernels.set_num_threads(threads)
    try:
        return kernels.matmul(x, w, bias)
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("n", [1, 7, 16, 31, 300])
@pytest.mark.parametrize("qtype", INT8_TYPES, ids=lambda t: t.name)
def test_int8_matmul_accuracy_and_threads(qtype, n):
    rng = np.random.default_rng(n + int(qtype))
    rows, cols = 45, 768 if n == 300 else 512   # n = 300, K = 768: two x row blocks
    raw = random_raw(qtype, rows, cols, rng, scale=0.05)
    w = QuantTensor("blk.0.ffn_up.weight", qtype, rows, cols, raw)
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 10, (n, 1))).astype(np.float32)
    x[0, :7] *= 30                                  # an outlier column in a block
    bias = rng.standard_normal(rows).astype(np.float32) if n % 2 else None
    w_f32 = gguf.quants.dequantize(raw, qtype)
    one = _run(x, w, bias, 1)
    two = _run(x, w, bias, 2)
    assert one.dtype == np.float32 and one.shape == (n, rows)
    assert np.array_equal(one, two)                 # thread count never changes results
    err = _rel_err(one, x, w_f32, bias)
    assert err.max() < 1e-2, err.max()
    assert err.mean() < 3e-3, err.mean()
    # it is not the exact path (the tolerance above is what it relies on)
    kernels.set_matmul_mode("f32")
    exact = kernels.matmul(x, w, bias)
    assert _rel_err(exact, x, w_f32, bias).max() < 1e-5
    assert not np.array_equal(one, exact)


def test_int8_types_of_the_level():
    assert set(runtime.compiled.qmatmul.supported_types()) == {int(t) for t in INT8_TYPES}


@pytest.mark.parametrize("rows", [1, 7, 97])
@pytest.mark.parametrize("qtype", INT8_TYPES, ids=lambda t: t.name)
def test_int8_unpack_is_bit_exact(qtype, rows, tmp_path):
    """The unpacked u8 quants and per-group scales give gguf.quants' values bit for bit:
    scl * q - mnf (Q6_K: scl * (q - 32), mnf = 32 scl; Q8_0: scl * q, mnf = 0)."""
    rng = np.random.default_rng(rows + 10 * int(qtype))
    cols = 768
    raw = random_raw(qtype, rows, cols, rng)
    raw[0, :TYPE_SIZE[qtype]] = 0                   # an all-zero block
    raw = memmapped(tmp_path, raw)
    q, scl, mnf = runtime.compiled.qmatmul.unpack_rows(int(qtype), raw, cols)
    assert q.shape == (rows, cols) and scl.shape == mnf.shape == (rows, cols // 16)
    lo, hi = {T.Q4_K: (0, 15), T.Q5_K: (0, 31), T.Q6_K: (0, 63), T.Q8_0: (-128, 127)}[qtype]
    assert lo <= q.min() and q.max() <= hi
    if rows == 97:
        assert q.min() == lo and q.max() == hi      # random bytes reach every bit
    s, m = np.repeat(scl, 16, axis=1), np.repeat(mnf, 16, axis=1)
    if qtype == T.Q6_K:
        got = s * (q - 32).astype(np.float32)
        assert np.array_equal(mnf, 32 * scl)
    else:
        got = s * q.astype(np.float32) - m
    ref = gguf.quants.dequantize(np.asarray(raw), qtype)
    assert got.dtype == np.float32 and np.array_equal(got, ref)


@pytest.mark.parametrize("rows", [1, 7, 97])
@pytest.mark.parametrize("qtype", INT8_TYPES, ids=lambda t: t.name)
def test_int8_matmul_odd_shapes(qtype, rows):
    rng = np.random.default_rng(rows * 3 + int(qtype))
    for n, cols in ((1, 256), (3, 1280), (13, 256)):
        raw = random_raw(qtype, rows, cols, rng, scale=0.05)
        w = QuantTensor("w", qtype, rows, cols, raw)
        x = rng.standard_normal((n, cols)).astype(np.float32)
        bias = rng.standard_normal(rows).astype(np.float32)
        one, two = _run(x, w, bias, 1), _run(x, w, bias, 2)
        assert np.array_equal(one, two)
        err = _rel_err(one, x, gguf.quants.dequantize(raw, qtype), bias)
        assert err.max() < 1e-2, (n, cols, err.max())


@pytest.mark.parametrize("qtype", INT8_TYPES, ids=lambda t: t.name)
def test_int8_row_result_does_not_depend_on_batch(qtype):
    """A row gives the same bits alone and inside any batch (batched == single)."""
    rng = np.random.default_rng(7)
    rows, cols = 33, 3072
    raw = random_raw(qtype, rows, cols, rng, scale=0.05)
    w = QuantTensor("w", qtype, rows, cols, raw)
    x = rng.standard_normal((150, cols)).astype(np.float32)
    full = kernels.matmul(x, w)
    for i in (0, 3, 67, 68, 149):
        assert np.array_equal(kernels.matmul(x[i:i + 1].copy(), w)[0], full[i])
    assert np.array_equal(kernels.matmul(x[5:12].copy(), w), full[5:12])


def test_int8_zero_and_constant_rows():
    rng = np.random.default_rng(3)
    raw = random_raw(T.Q4_K, 9, 256, rng, scale=0.05)
    w = QuantTensor("w", T.Q4_K, 9, 256, raw)
    x = np.zeros((3, 256), np.float32)
    x[1] = 2.5
    x[2, 100] = -1e-30
    out = kernels.matmul(x, w)
    assert np.array_equal(out[0], np.zeros(9, np.float32))
    err = _rel_err(out, x, gguf.quants.dequantize(raw, T.Q4_K), None)
    assert err.max() < 1e-2


def test_f32_mode_and_other_types_stay_exact():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 512)).astype(np.float32)
    for qtype in (T.F16, T.F32, T.Q5_0, T.Q4_0):
        raw = random_raw(qtype, 6, 512, rng, scale=0.05)
        w = QuantTensor("w", qtype, 6, 512, raw)
        assert _rel_err(kernels.matmul(x, w), x, gguf.quants.dequantize(raw, qtype), None).max() < 1e-5
    # Q8_0 with K not a multiple of 256: the exact path
    raw = random_raw(T.Q8_0, 6, 96, rng, scale=0.05)
    xs = rng.standard_normal((4, 96)).astype(np.float32)
    out = kernels.matmul(xs, QuantTensor("w", T.Q8_0, 6, 96, raw))
    assert _rel_err(out, xs, gguf.quants.dequantize(raw, T.Q8_0), None).max() < 1e-5
    with pytest.raises(ValueError):
        kernels.set_matmul_mode("int4")
    assert kernels.get_matmul_mode() == "auto"


def test_int8_kernel_validates_arguments():
    rng = np.random.default_rng(9)
    raw = random_raw(T.Q4_K, 4, 512, rng)
    x = np.zeros((2, 512), np.float32)
    out = np.empty((2, 4), np.float32)
    with pytest.raises(ValueError):
        runtime.compiled.qmatmul.matmul_q8(x, int(T.Q4_0), raw, 512, None, out, 1)          # type
    with pytest.raises(ValueError):
        runtime.compiled.qmatmul.matmul_q8(x[:, :256].copy(), int(T.Q4_K), raw, 256, None, out, 1)  # row bytes
    with pytest.raises(ValueError):
        runtime.compiled.qmatmul.matmul_q8(x, int(T.Q4_K), raw, 500, None, out, 1)          # cols
    with pytest.raises(ValueError):
        runtime.compiled.qmatmul.matmul_q8(x, int(T.Q4_K), raw, 512, None, np.empty((2, 5), np.float32), 1)
    with pytest.raises(ValueError):
        runtime.compiled.qmatmul.matmul_q8(x, int(T.Q4_K), raw, 512, np.zeros(3, np.float32), out, 1)
