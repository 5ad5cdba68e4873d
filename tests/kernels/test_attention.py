"""Tests of the attention and segment-mean kernels (lodevec.kernels.attention /
segment_mean) against float64 numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from isa_levels import isa_level  # noqa: F401  (autouse: every test at every ISA level)

from lodevec import kernels


def rope_tables(lengths, half, base=10000.0):
    """Per-token cos/sin (N, half): row = position in its sequence; a different base per
    length (as dynamic NTK gives past the trained context)."""
    cs, sn = [], []
    for n in lengths:
        b = base * (1.0 + n / 1000.0)
        inv = 1.0 / b ** (np.arange(half, dtype=np.float64) / half)
        f = np.outer(np.arange(n), inv)
        cs.append(np.cos(f))
        sn.append(np.sin(f))
    return (np.concatenate(cs).astype(np.float32), np.concatenate(sn).astype(np.float32))


def reference(q, k, v, offsets, nh, cos=None, sin=None):
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    N, H = q.shape
    d = H // nh
    out = np.zeros((N, H))
    for s, e in zip(offsets[:-1], offsets[1:], strict=True):
        if e == s:
            continue
        for h in range(nh):
            qh, kh, vh = (a[s:e, h * d:(h + 1) * d] for a in (q, k, v))
            if cos is not None:
                c, sn = cos[s:e].astype(np.float64), sin[s:e].astype(np.float64)
                half = d // 2

                def rot(x, c=c, sn=sn, half=half):
                    x1, x2 = x[:, :half], x[:, half:]
                    return np.concatenate([x1 * c - x2 * sn, x2 * c + x1 * sn], axis=1)

                qh, kh = rot(qh), rot(kh)
            sc = qh @ kh.T / np.sqrt(d)
            sc -= sc.max(axis=1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=1, keepdims=True)
            out[s:e, h * d:(h + 1) * d] = p @ vh
    return out


def make(lengths, H, rng, scale=1.0):
    N = int(sum(lengths))
    qkv = (rng.standard_normal((N, 3 * H)) * scale).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return qkv, offsets


def check(got, want, tol=2e-5):
    err = np.abs(got - want).max() if got.size else 0.0
    assert err <= tol * max(1.0, np.abs(want).max()), err


@pytest.mark.parametrize("rope", [False, True], ids=["plain", "rope"])
@pytest.mark.parametrize("lengths,H,nh", [
    ([1], 8, 2),
    ([7], 24, 3),            # odd length, d = 8
    ([16], 768, 12),         # the nomic query shape
    ([17, 3, 40, 1], 64, 2),  # several lengths in one batch, d = 32
    ([33, 65, 5], 96, 1),    # d = 96: three value panels, one partial
    ([130, 9], 40, 4),       # d = 10, n crosses several key panels
])
def test_attention_matches_reference(lengths, H, nh, rope, threads):
    rng = np.random.default_rng(sum(lengths) + H + nh)
    qkv, offsets = make(lengths, H, rng, scale=2.0)
    q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]  # strided column views
    cos = sin = None
    if rope:
        cos, sin = rope_tables(lengths, H // nh // 2)
    got = kernels.attention(q, k, v, offsets, nh, cos, sin)
    assert got.shape == (sum(lengths), H) and got.dtype == np.float32
    check(got, reference(q, k, v, offsets, nh, cos, sin))


def test_attention_contiguous_inputs_and_out(threads):
    rng = np.random.default_rng(3)
    H, nh, lengths = 48, 4, [5, 0, 21]  # an empty sequence is allowed
    qkv, offsets = make(lengths, H, rng)
    q, k, v = (np.ascontiguousarray(qkv[:, i * H:(i + 1) * H]) for i in range(3))
    out = np.full((26, H), np.nan, np.float32)
    res = kernels.attention(q, k, v, offsets, nh, out=out)
    assert res is out
    check(out, reference(q, k, v, offsets, nh))


def test_attention_thread_count_invariant():
    rng = np.random.default_rng(5)
    H, nh, lengths = 128, 4, [50, 200, 3, 77]
    qkv, offsets = make(lengths, H, rng)
    q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
    cos, sin = rope_tables(lengths, H // nh // 2)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        one = kernels.attention(q, k, v, offsets, nh, cos, sin)
        kernels.set_num_threads(2)
        two = kernels.attention(q, k, v, offsets, nh, cos, sin)
    finally:
        kernels.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_attention_long_sequence(threads):
    """3000 tokens: several query blocks, no n x n scores matrix."""
    rng = np.random.default_rng(7)
    H, nh, lengths = 128, 2, [3000, 11]
    qkv, offsets = make(lengths, H, rng, scale=3.0)
    q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
    cos, sin = rope_tables(lengths, H // nh // 2)
    check(kernels.attention(q, k, v, offsets, nh, cos, sin),
          reference(q, k, v, offsets, nh, cos, sin))


def test_attention_sequences_are_independent():
    rng = np.random.default_rng(9)
    H, nh = 64, 4
    qkv, offsets = make([12, 30], H, rng)
    q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
    both = kernels.attention(q, k, v, offsets, nh)
    alone = kernels.attention(q[12:], k[12:], v[12:], np.array([0, 30]), nh)
    np.testing.assert_array_equal(both[12:], alone)


def _args(N=10, H=16):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((N, H)).astype(np.float32) for _ in range(3))
    return q, k, v, np.array([0, 4, N], dtype=np.int64)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: {**a, "offsets": np.array([0, 4, 11])}, "offsets must run from 0 to 10"),
    (lambda a: {**a, "offsets": np.array([1, 4, 10])}, "offsets must run from 0"),
    (lambda a: {**a, "offsets": np.array([0, 7, 4, 10])}, "non-decreasing"),
    (lambda a: {**a, "offsets": np.array([[0, 10]])}, "1-D integer"),
    (lambda a: {**a, "offsets": np.array([0.0, 10.0])}, "1-D integer"),
    (lambda a: {**a, "offsets": np.array([], dtype=np.int64)}, "1-D integer"),
    (lambda a: {**a, "n_heads": 3}, "n_heads"),
    (lambda a: {**a, "n_heads": 0}, "n_heads"),
    (lambda a: {**a, "k": a["k"][:9]}, "k: expected shape"),
    (lambda a: {**a, "v": a["v"].astype(np.float64)}, "v: expected a 2-D float32"),
    (lambda a: {**a, "q": a["q"][:, ::2]}, "q: columns must be contiguous"),
    (lambda a: {**a, "q": np.asfortranarray(a["q"])}, "columns must be contiguous"),
    (lambda a: {**a, "v": a["v"][::-1]}, "v: columns must be contiguous and rows non-overlapping"),
    (lambda a: {**a, "cos": np.zeros((10, 4), np.float32)}, "together"),
    (lambda a: {**a, "cos": np.zeros((10, 3), np.float32),
                "sin": np.zeros((10, 3), np.float32)}, "cos has shape"),
    (lambda a: {**a, "cos": np.zeros((10, 4), np.float64),
                "sin": np.zeros((10, 4), np.float32)}, "cos: expected a C-contiguous"),
    (lambda a: {**a, "out": np.zeros((10, 15), np.float32)}, "out: expected shape"),
    (lambda a: {**a, "out": a["q"]}, "overlaps"),
])
def test_attention_rejects_bad_arguments(mutate, match):
    q, k, v, offsets = _args()
    a = mutate({"q": q, "k": k, "v": v, "offsets": offsets, "n_heads": 2,
                "cos": None, "sin": None, "out": None})
    with pytest.raises(ValueError, match=match):
        kernels.attention(**a)


def test_attention_rejects_odd_head_dim_with_rope():
    q, k, v, offsets = _args(H=6)
    with pytest.raises(ValueError, match="even head dimension"):
        kernels.attention(q, k, v, offsets, 2, np.zeros((10, 1), np.float32),
                          np.zeros((10, 1), np.float32))


def test_attention_read_only_inputs():
    q, k, v, offsets = _args()
    for a in (q, k, v):
        a.flags.writeable = False
    check(kernels.attention(q, k, v, offsets, 2), reference(q, k, v, offsets, 2))


@pytest.mark.parametrize("lengths,D", [([1], 3), ([5, 0, 9], 300), ([200, 100, 1], 768)])
def test_segment_mean(lengths, D, threads):
    rng = np.random.default_rng(D)
    N = sum(lengths)
    x = rng.standard_normal((N, D)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    got = kernels.segment_mean(x, offsets)
    want = np.zeros((len(lengths), D))
    for i, (s, e) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        if e > s:
            want[i] = x[s:e].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_segment_mean_rejects_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="offsets must run"):
        kernels.segment_mean(x, np.array([0, 5]))
    with pytest.raises(ValueError, match="non-decreasing"):
        kernels.segment_mean(x, np.array([0, 3, 2, 4]))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.segment_mean(x[:, :2], np.array([0, 4]))
