"""Quantized weights: dequantization, the embedding-row lookup, and the linear layer
(exact float32, or int8 activations with integer dot products)."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from ..gguf.constants import GGMLQuantizationType
from ..gguf.tensors import QuantTensor
from . import checks, runtime


def dequantize(t: QuantTensor, *, threads: int | None = None) -> np.ndarray:
    """Dequantize a whole tensor.

    Bit-identical to ``gguf.quants.dequantize(t.data, t.qtype)``.

    Args:
        t: Tensor of any type in ``constants.SUPPORTED_TYPES``.

    Returns:
        float32 array of shape ``(t.rows, t.cols)`` (a new array).

    Raises:
        ValueError: unsupported type, or ``t.data`` is not ``rows * row_bytes``
            C-contiguous uint8 bytes.
    """
    qt, raw = checks.tensor(t)
    out = np.empty((t.rows, t.cols), dtype=np.float32)
    runtime.compiled.quant.dequantize_rows(qt, raw, t.cols, out, runtime.resolve(threads))
    return out


def get_rows(t: QuantTensor, ids: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Dequantize selected rows (the token-embedding lookup).

    Args:
        t: Tensor, e.g. ``token_embd.weight`` (vocab, D).
        ids: Integer array (any integer dtype, 1-D) of row indices in ``[0, t.rows)``.

    Returns:
        float32 array of shape ``(len(ids), t.cols)``.

    Raises:
        IndexError: an id is negative or ``>= t.rows`` (message names the tensor).
        ValueError: ``ids`` is not a 1-D integer array, or ``t`` is malformed.
    """
    qt, raw = checks.tensor(t)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(f"{t.name}: ids must be a 1-D integer array, got {checks.describe(ids)}")
    if ids.size:  # checked on the caller's dtype, before any narrowing to int64
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= t.rows:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{t.name}: row id {bad} out of range [0, {t.rows})")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = np.empty((ids.shape[0], t.cols), dtype=np.float32)
    runtime.compiled.quant.get_rows(qt, raw, t.cols, ids, out, runtime.resolve(threads))
    return out


# --------------------------------------------------------------------- matmul
# int8-activation path (qmatmul.pyx, the llama.cpp scheme): x quantized per row
# into int8 blocks of 256, integer dots with the 4/5/6/8-bit weight quants.
# Taken for every weight of a type the level's qmatmul.supported_types() lists
# (Q4_K / Q5_K / Q6_K / Q8_0) with K a multiple of 256, whatever n:
#  * the choice must not depend on n: a text's embedding must be the same alone or
#    in a batch (tests/test_conformance.py::test_batched_equals_single), and the
#    encoder multiplies the whole unpadded batch at once -- an n threshold would put
#    a short query on the int8 path alone and on the f32 path in a batch;
#  * where it matters (small n, where the f32 kernel is bound by dequantization) it
#    wins by far, and at large n it stays close (docs/performance.md, "int8 path").
# F16/F32 and the other quant types always take the exact f32 path;
# LODEVEC_MATMUL=f32 / set_matmul_mode("f32") forces it everywhere.
# AMX tiles (the amx level, amx.pyx): the same int8 activations, for these types and
# every n (the same argument as above: never chosen by batch size).
_AMX_TYPES = frozenset(int(t) for t in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K,
                                        GGMLQuantizationType.Q6_K, GGMLQuantizationType.Q8_0))


# Weights repacked for the AMX tiles (amx.repack: 2 + 9/64 bytes per weight), kept for
# as long as the tensor lives: a forward then reads the tile layout directly instead of
# unpacking every K-quant block again (all the work at small n).
# Up to AMX_UNPACK_ROWS rows of x (one tile group) the weight is unpacked per call
# instead: reading 4.5-6.6 bits per weight beats reading 16 when that is all the work,
# and a query-only process never holds the repacked copy.  Both give identical bits,
# so the choice by n cannot change a text's vector.
AMX_UNPACK_ROWS = 16
_amx_packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_amx_lock = threading.Lock()


def _amx_repacked(k, w: QuantTensor, qt: int, raw: np.ndarray, threads: int):
    key = id(w)
    packed = _amx_packed.get(key)
    if packed is None:
        with _amx_lock:
            packed = _amx_packed.get(key)
            if packed is None:
                packed = k.amx.repack(qt, raw, w.cols, threads)
                _amx_packed[key] = packed
                weakref.finalize(w, _amx_packed.pop, key, None)
    return packed


def amx_repacked_bytes() -> int:
    """Memory held by weights repacked for the AMX tiles (all live tensors)."""
    return sum(p.nbytes + s.nbytes for p, s in list(_amx_packed.values()))


def int8_types() -> frozenset[int]:
    """GGML type ids the level in use multiplies with int8 activations (``"auto"`` mode,
    K a multiple of 256); every other type takes the exact f32 path."""
    k = runtime.compiled
    if k.amx is not None:
        return _AMX_TYPES
    return frozenset(k.qmatmul.supported_types()) if k.int8 else frozenset()


def matmul(x: np.ndarray, w: QuantTensor, bias: np.ndarray | None = None,
           out: np.ndarray | None = None, *, threads: int | None = None) -> np.ndarray:
    """Linear layer on quantized weights: ``x @ dequantize(w).T + bias``.

    Exact float32 arithmetic (weights dequantized to float32, float32 FMAs); the
    result matches a float64 reference to float32 rounding of the dot products --
    except for Q4_K / Q5_K / Q6_K / Q8_0 weights in the default ``"auto"`` mode (see
    :func:`set_matmul_mode`), where x is quantized to int8 per row and block of 256
    (as llama.cpp does): error ~1e-3 of |x_i|.|w_j| per output.  Each row's
    result depends only on that row (not on n or the thread count).

    Args:
        x: float32 ``(n, K)`` C-contiguous activations, ``K == w.cols``.
        w: Weight, ``(M, K)`` = (out features, in features), any supported type.
        bias: Optional float32 ``(M,)``.
        out: Optional float32 ``(n, M)`` C-contiguous destination (must not overlap x).

    Returns:
        float32 ``(n, M)`` (``out`` when given).

    Raises:
        ValueError: wrong dtype / layout / shape of any argument, or a malformed ``w``.
    """
    qt, raw = checks.tensor(w)
    checks.f32(f"matmul({w.name}): x", x, 2)
    if x.shape[1] != w.cols:
        raise ValueError(f"matmul({w.name}): x has {x.shape[1]} columns, "
                         f"{w.name} expects {w.cols} (weight shape {w.rows}x{w.cols})")
    checks.vec(f"matmul({w.name}): bias", bias, w.rows)
    n = x.shape[0]
    if out is None:
        out = np.empty((n, w.rows), dtype=np.float32)
    else:
        checks.f32(f"matmul({w.name}): out", out, 2, writable=True)
        if out.shape != (n, w.rows):
            raise ValueError(f"matmul({w.name}): out has shape {out.shape}, expected {(n, w.rows)}")
        if np.may_share_memory(out, x):
            raise ValueError(f"matmul({w.name}): out overlaps x")
    k = runtime.compiled
    if k.amx is not None and qt in _AMX_TYPES and runtime.get_matmul_mode() == "auto" \
            and w.cols % 256 == 0:
        nt = runtime.resolve(threads)
        if n <= AMX_UNPACK_ROWS and id(w) not in _amx_packed:
            k.amx.matmul_amx(x, qt, raw, w.cols, bias, out, nt)
        else:
            planes, scales = _amx_repacked(k, w, qt, raw, nt)
            k.amx.matmul_packed(x, qt, planes, scales, w.rows, bias, out, nt)
    elif k.int8 and qt in k.qmatmul.supported_types() and w.cols % 256 == 0 \
            and runtime.get_matmul_mode() == "auto":
        k.qmatmul.matmul_q8(x, qt, raw, w.cols, bias, out, runtime.resolve(threads))
    else:
        k.matmul.matmul_q(x, qt, raw, w.cols, bias, out, runtime.resolve(threads))
    return out
