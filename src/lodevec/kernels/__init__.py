"""The compute seam: every numeric kernel the encoder uses, on numpy arrays.

This is the only module that imports ``lodevec._kernels.*`` (the compiled Cython
code).  Each function checks dtype, contiguity and shapes here, in Python, and
raises ``ValueError`` (``IndexError`` for bad row ids) with a message naming the
tensor and what was expected, *before* any kernel runs without the GIL -- a
kernel never reads past a buffer because of a bad argument.  A GPU backend can
replace this module function for function: callers pass numpy arrays and
:class:`~lodevec.tensors.QuantTensor` only.

Conventions: activations are float32, C-contiguous, one token per row.  A linear
layer's weight ``w`` is a QuantTensor with ``w.rows`` output features and
``w.cols`` input features; ``matmul`` computes ``x @ dequantize(w).T + bias``.

Threads: all kernels use the count set by :func:`set_num_threads` (default: the
``LODEVEC_NUM_THREADS`` environment variable, else OpenMP's default, i.e.
``OMP_NUM_THREADS`` or the number of cores).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .._kernels import attention as _attn
from .._kernels import matmul as _mm
from .._kernels import ops as _ops
from .._kernels import qmatmul as _qmm
from .._kernels import quant as _quant
from .._kernels import vscan as _vscan
from ..gguf.constants import BLOCK_SIZE, SUPPORTED_TYPES, TYPE_SIZE, GGMLQuantizationType
from ..gguf.tensors import QuantTensor

__all__ = [
    "dequantize", "dequantize_raw", "get_rows", "matmul",
    "layer_norm", "add_layer_norm", "gelu", "swiglu", "mean_pool", "l2_normalize",
    "softmax_rows", "attention", "segment_mean", "set_num_threads", "get_num_threads", "openmp_enabled", "kernel_info",
    "set_matmul_mode", "get_matmul_mode", "quantize_codes", "quantize_query", "scan_codes",
]


# ----------------------------------------------------------------------- threads
def _default_threads() -> int:
    env = os.environ.get("LODEVEC_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n if _quant.openmp_enabled() else 1
    return max(1, int(_quant.omp_max_threads()))


_lock = threading.Lock()
_num_threads = _default_threads()


def openmp_enabled() -> bool:
    """Whether the kernels were compiled with OpenMP (else they run on one thread).

    Returns:
        True when built with OpenMP (``LODEVEC_NO_OPENMP`` unset on Linux).
    """
    return bool(_quant.openmp_enabled())


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel uses from now on (process-wide).

    Args:
        n: Thread count, >= 1.  Ignored (stays 1) when OpenMP is not compiled in.

    Raises:
        ValueError: ``n`` is not an integer >= 1.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = int(n) if openmp_enabled() else 1


def get_num_threads() -> int:
    """The number of threads kernels use.

    Returns:
        The current thread count (1 without OpenMP).
    """
    return _num_threads


def kernel_info() -> dict[str, object]:
    """What was compiled in: ISA of the micro-kernels and their tile sizes.

    Returns:
        ``{"isa": "avx512" | "avx2" | "scalar", "dot_tile": (MR, NR),
        "panel_tile": (NX, MW), "openmp": bool, "threads": int}``.
    """
    isa, mr, nr, nx, mw = _mm.micro_kernel()
    return {"isa": isa, "dot_tile": (mr, nr), "panel_tile": (nx, mw),
            "openmp": openmp_enabled(), "threads": _num_threads}


# -------------------------------------------------------------------- checking
def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        layout = "C-contiguous" if a.flags.c_contiguous else "non-contiguous"
        return f"{a.dtype} array of shape {a.shape} ({layout})"
    return type(a).__name__


def _f32(name: str, a: object, ndim: int | tuple[int, ...], *, writable: bool = False) -> np.ndarray:
    """Check ``a`` is a C-contiguous float32 ndarray with ``ndim`` dimensions."""
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim not in dims \
            or not a.flags.c_contiguous:
        want = " or ".join(f"{d}-D" for d in dims)  # built only on failure: hot path
        raise ValueError(f"{name}: expected a C-contiguous {want} float32 array, got {_describe(a)}")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: the array is read-only but is written in place")
    return a


def _vec(name: str, a: object, n: int) -> np.ndarray | None:
    """Optional float32 vector of length ``n``."""
    if a is None:
        return None
    _f32(name, a, 1)
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} elements, got {a.shape[0]}")
    return a


def _raw_rows(name: str, qtype: object, raw: object, rows: int | None, cols: int) -> tuple[int, np.ndarray]:
    """Validate quantized bytes; return (type id, uint8 (rows, row_bytes) view)."""
    try:
        qt = GGMLQuantizationType(qtype)
    except ValueError:
        raise ValueError(f"{name}: unknown GGML type {qtype!r}") from None
    if qt not in SUPPORTED_TYPES:
        raise ValueError(f"{name}: type {qt.name} is not supported "
                         f"(supported: {', '.join(t.name for t in SUPPORTED_TYPES)})")
    blk, size = BLOCK_SIZE[qt], TYPE_SIZE[qt]
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols <= 0 or cols % blk:
        raise ValueError(f"{name}: {cols!r} columns is not a positive multiple of the "
                         f"{qt.name} block size {blk}")
    row_bytes = int(cols) // blk * size
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or not raw.flags.c_contiguous:
        raise ValueError(f"{name}: expected C-contiguous uint8 data, got {_describe(raw)}")
    if rows is None:
        if raw.size % row_bytes:
            raise ValueError(f"{name}: {raw.size} bytes is not a whole number of "
                             f"{row_bytes}-byte rows ({qt.name}, {cols} columns)")
        rows = raw.size // row_bytes
    expected = int(rows) * row_bytes
    if raw.size != expected:
        raise ValueError(f"{name}: data has {raw.size} bytes, expected {rows} rows x "
                         f"{row_bytes} bytes = {expected} ({qt.name}, {cols} columns)")
    if raw.ndim != 2 or raw.shape != (rows, row_bytes):
        raw = raw.reshape(int(rows), row_bytes)  # contiguous: a view, never a copy
    return int(qt), raw


def _tensor(t: object) -> tuple[int, np.ndarray]:
    if not isinstance(t, QuantTensor):
        raise ValueError(f"expected a QuantTensor, got {type(t).__name__}")
    if t.rows < 0:
        raise ValueError(f"{t.name}: negative row count {t.rows}")
    return _raw_rows(t.name, t.qtype, t.data, t.rows, t.cols)


# ---------------------------------------------------------------- dequantize
def dequantize(t: QuantTensor) -> np.ndarray:
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
    qt, raw = _tensor(t)
    out = np.empty((t.rows, t.cols), dtype=np.float32)
    _quant.dequantize_rows(qt, raw, t.cols, out, _num_threads)
    return out


def dequantize_raw(qtype: GGMLQuantizationType | int, raw: np.ndarray, cols: int) -> np.ndarray:
    """Dequantize raw GGML bytes holding whole rows of ``cols`` elements.

    Args:
        qtype: GGML type (enum or id).
        raw: C-contiguous uint8 array of ``rows * row_bytes`` bytes (any shape).
        cols: Elements per row (a multiple of the type's block size).

    Returns:
        float32 array of shape ``(rows, cols)``.

    Raises:
        ValueError: unsupported type or a byte count that is not whole rows.
    """
    qt, rows2d = _raw_rows("raw", qtype, raw, None, cols)
    out = np.empty((rows2d.shape[0], cols), dtype=np.float32)
    _quant.dequantize_rows(qt, rows2d, cols, out, _num_threads)
    return out


def get_rows(t: QuantTensor, ids: np.ndarray) -> np.ndarray:
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
    qt, raw = _tensor(t)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(f"{t.name}: ids must be a 1-D integer array, got {_describe(ids)}")
    if ids.size:  # checked on the caller's dtype, before any narrowing to int64
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= t.rows:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{t.name}: row id {bad} out of range [0, {t.rows})")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    out = np.empty((ids.shape[0], t.cols), dtype=np.float32)
    _quant.get_rows(qt, raw, t.cols, ids, out, _num_threads)
    return out


# --------------------------------------------------------------------- matmul
# int8-activation path (qmatmul.pyx, the llama.cpp scheme): x quantized per row
# into int8 blocks of 256, VNNI integer dots with the 4/6/8-bit weight quants.
# Taken for every Q4_K / Q6_K / Q8_0 weight with K a multiple of 256, whatever n:
#  * the choice must not depend on n: a text's embedding must be the same alone or
#    in a batch (tests/test_conformance.py::test_batched_equals_single, 2e-6), and
#    the encoder multiplies the whole unpadded batch at once -- an n threshold would
#    put a short query on the int8 path alone and on the f32 path in a batch;
#  * where it matters it wins by far: 1 thread, nomic shapes, GFLOP/s int8 / f32:
#    n=16 156-162 / 92-99 (the f32 kernel is dequantization-bound there), n=128
#    181-190 / 170-184, n=512 175-187 / 147-198, n=2048 161-183 / 152-182 (Q4_K
#    large n is within ~10 % of the f32 panel kernel, Q6_K is faster).
# F16/F32 and the other quant types always take the exact f32 path;
# LODEVEC_MATMUL=f32 / set_matmul_mode("f32") forces it everywhere.
_INT8_TYPES = frozenset(int(t) for t in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K,
                                         GGMLQuantizationType.Q8_0))
_MATMUL_MODES = ("auto", "f32")


def _default_matmul_mode() -> str:
    env = os.environ.get("LODEVEC_MATMUL", "").strip().lower()
    return env if env in _MATMUL_MODES else "auto"


_matmul_mode = _default_matmul_mode()
_int8_ok = bool(_qmm.available())


def set_matmul_mode(mode: str) -> None:
    """Choose the matmul arithmetic (process-wide).

    Args:
        mode: ``"auto"`` (default): int8 activations with VNNI integer dot products
            on Q4_K / Q6_K / Q8_0 weights (K a multiple of 256), like llama.cpp;
            exact float32 for every other type.  ``"f32"``: always the exact float32
            path.  The default comes from the ``LODEVEC_MATMUL`` environment variable.

    Raises:
        ValueError: unknown mode.
    """
    global _matmul_mode
    if mode not in _MATMUL_MODES:
        raise ValueError(f"set_matmul_mode: expected one of {_MATMUL_MODES}, got {mode!r}")
    _matmul_mode = mode


def get_matmul_mode() -> str:
    """The current matmul mode, ``"auto"`` or ``"f32"``."""
    return _matmul_mode


def matmul(x: np.ndarray, w: QuantTensor, bias: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """Linear layer on quantized weights: ``x @ dequantize(w).T + bias``.

    Exact float32 arithmetic (weights dequantized to float32, float32 FMAs); the
    result matches a float64 reference to float32 rounding of the dot products --
    except for Q4_K / Q6_K / Q8_0 weights in the default ``"auto"`` mode (see
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
    qt, raw = _tensor(w)
    _f32(f"matmul({w.name}): x", x, 2)
    if x.shape[1] != w.cols:
        raise ValueError(f"matmul({w.name}): x has {x.shape[1]} columns, "
                         f"{w.name} expects {w.cols} (weight shape {w.rows}x{w.cols})")
    _vec(f"matmul({w.name}): bias", bias, w.rows)
    n = x.shape[0]
    if out is None:
        out = np.empty((n, w.rows), dtype=np.float32)
    else:
        _f32(f"matmul({w.name}): out", out, 2, writable=True)
        if out.shape != (n, w.rows):
            raise ValueError(f"matmul({w.name}): out has shape {out.shape}, expected {(n, w.rows)}")
        if np.may_share_memory(out, x):
            raise ValueError(f"matmul({w.name}): out overlaps x")
    if qt in _INT8_TYPES and _matmul_mode == "auto" and _int8_ok and w.cols % 256 == 0:
        _qmm.matmul_q8(x, qt, raw, w.cols, bias, out, _num_threads)
    else:
        _mm.matmul_q(x, qt, raw, w.cols, bias, out, _num_threads)
    return out


# ------------------------------------------------------------------------ ops
def _affine(name: str, weight: np.ndarray | None, bias: np.ndarray | None, d: int) -> None:
    _vec(f"{name}: weight", weight, d)
    _vec(f"{name}: bias", bias, d)
    if bias is not None and weight is None:
        raise ValueError(f"{name}: bias given without weight")


def layer_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float,
               out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise layer norm, as torch: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    ``var`` is the biased variance ``mean((x - mean)**2)``.

    Args:
        x: float32 ``(n, D)`` C-contiguous.
        weight: float32 ``(D,)`` or None (no affine, e.g. the Matryoshka norm).
        bias: float32 ``(D,)`` or None (requires ``weight``).
        eps: Added to the variance.
        out: Optional float32 ``(n, D)`` destination; may be ``x`` itself.

    Returns:
        float32 ``(n, D)`` (``out`` when given, else a new array).

    Raises:
        ValueError: wrong dtype / layout / shape.
    """
    _f32("layer_norm: x", x, 2)
    _affine("layer_norm", weight, bias, x.shape[1])
    if out is None:
        out = np.empty_like(x)
    else:
        _f32("layer_norm: out", out, 2, writable=True)
        if out.shape != x.shape:
            raise ValueError(f"layer_norm: out has shape {out.shape}, expected {x.shape}")
        if out is not x and np.may_share_memory(out, x):
            raise ValueError("layer_norm: out partially overlaps x")
    _ops.layer_norm(x, weight, bias, float(eps), out, _num_threads)
    return out


def add_layer_norm(x: np.ndarray, residual: np.ndarray, weight: np.ndarray | None,
                   bias: np.ndarray | None, eps: float) -> np.ndarray:
    """Fused residual add and layer norm, in place: ``x = layer_norm(x + residual)``.

    Args:
        x: float32 ``(n, D)`` C-contiguous, writable; overwritten with the result.
        residual: float32 ``(n, D)`` C-contiguous.
        weight: float32 ``(D,)`` or None.
        bias: float32 ``(D,)`` or None (requires ``weight``).
        eps: Added to the variance.

    Returns:
        ``x``.

    Raises:
        ValueError: wrong dtype / layout / shape, or read-only ``x``.
    """
    _f32("add_layer_norm: x", x, 2, writable=True)
    _f32("add_layer_norm: residual", residual, 2)
    if residual.shape != x.shape:
        raise ValueError(f"add_layer_norm: residual has shape {residual.shape}, expected {x.shape}")
    if residual is not x and np.may_share_memory(residual, x):
        raise ValueError("add_layer_norm: residual overlaps x")
    _affine("add_layer_norm", weight, bias, x.shape[1])
    _ops.add_layer_norm(x, residual, weight, bias, float(eps), _num_threads)
    return x


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in place: ``x = 0.5 * x * (1 + erf(x / sqrt(2)))``.

    Args:
        x: float32 C-contiguous writable array, any shape.

    Returns:
        ``x``.

    Raises:
        ValueError: wrong dtype / layout, or read-only.
    """
    _f32("gelu: x", x, tuple(range(1, 5)), writable=True)
    _ops.gelu(x.reshape(-1), _num_threads)
    return x


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """SwiGLU activation: ``up * silu(gate)``, ``silu(g) = g * sigmoid(g)``, written into ``up``.

    Args:
        gate: float32 C-contiguous, same shape as ``up``.
        up: float32 C-contiguous writable; overwritten with the result.

    Returns:
        ``up``.

    Raises:
        ValueError: wrong dtype / layout / shapes differ / read-only ``up``.
    """
    _f32("swiglu: gate", gate, tuple(range(1, 5)))
    _f32("swiglu: up", up, tuple(range(1, 5)), writable=True)
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate has shape {gate.shape}, up has {up.shape}")
    if gate is not up and np.may_share_memory(gate, up):
        raise ValueError("swiglu: gate overlaps up")
    _ops.swiglu(gate.reshape(-1), up.reshape(-1), _num_threads)
    return up


def mean_pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over tokens.

    Args:
        h: float32 ``(B, T, D)`` C-contiguous hidden states.
        mask: ``(B, T)`` bool or integer; nonzero marks a real token.

    Returns:
        float32 ``(B, D)``; a sequence with no unmasked token gives a zero row.

    Raises:
        ValueError: wrong dtype / layout / shapes.
    """
    _f32("mean_pool: h", h, 3)
    mask = np.asarray(mask)
    if mask.shape != h.shape[:2] or not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"mean_pool: mask must be a bool/integer array of shape {h.shape[:2]}, "
                         f"got {_describe(mask)}")
    m = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    out = np.empty((h.shape[0], h.shape[2]), dtype=np.float32)
    _ops.mean_pool(h, m, out, _num_threads)
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Scale rows to unit L2 norm (a zero row stays zero).

    Args:
        x: float32 ``(n, D)`` or ``(D,)`` C-contiguous.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ValueError: wrong dtype / layout / rank.
    """
    _f32("l2_normalize: x", x, (1, 2))
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    out = np.empty_like(x2)
    _ops.l2_normalize(x2, out, _num_threads)
    return out.reshape(x.shape)


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in place (``-inf`` entries become 0; an all ``-inf`` row becomes 0).

    Args:
        x: float32 ``(n, D)`` C-contiguous writable.

    Returns:
        ``x``.

    Raises:
        ValueError: wrong dtype / layout / rank, or read-only.
    """
    _f32("softmax_rows: x", x, 2, writable=True)
    _ops.softmax_rows(x, _num_threads)
    return x


# ------------------------------------------------------------- unpadded batches
def _offsets(name: str, offsets: object, n_rows: int) -> np.ndarray:
    """Validate sequence boundaries: 1-D integers, 0 = o[0] <= o[1] <= ... <= o[-1] = n_rows."""
    o = np.asarray(offsets)
    if o.ndim != 1 or o.size < 1 or not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"{name}: offsets must be a 1-D integer array of B+1 >= 1 boundaries, "
                         f"got {_describe(o)}")
    if int(o[0]) != 0 or int(o[-1]) != n_rows:
        raise ValueError(f"{name}: offsets must run from 0 to {n_rows} (the row count), "
                         f"got {int(o[0])}..{int(o[-1])}")
    if o.size > 2 and (o[1:] < o[:-1]).any():  # two boundaries 0 <= n are ordered
        raise ValueError(f"{name}: offsets must be non-decreasing")
    return np.ascontiguousarray(o, dtype=np.int64)


def _rows(name: str, a: object, shape: tuple[int, int]) -> np.ndarray:
    """A float32 (n, H) matrix with contiguous columns; rows may be strided (a column
    slice of a wider matrix such as the fused QKV projection)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D float32 array, got {_describe(a)}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if a.shape[0] and a.shape[1] and (a.strides[1] != 4 or (a.shape[0] > 1 and (
            a.strides[0] % 4 or a.strides[0] < 4 * a.shape[1]))):
        raise ValueError(f"{name}: columns must be contiguous and rows non-overlapping, "
                         f"got strides {a.strides}")
    return a


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, offsets: np.ndarray, n_heads: int,
              cos: np.ndarray | None = None, sin: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
    """Bidirectional multi-head attention over an unpadded batch.

    For each sequence ``s`` (rows ``offsets[s]:offsets[s+1]``) and head ``h`` (columns
    ``h*d:(h+1)*d``, ``d = H / n_heads``): ``softmax(rope(Q) rope(K)^T / sqrt(d)) V``,
    where ``rope`` is the NeoX rotate-half rotary embedding
    (``y1 = x1 cos - x2 sin``, ``y2 = x2 cos + x1 sin`` on the halves of each head)
    when ``cos``/``sin`` are given.  Sequences never attend to each other.

    Args:
        q, k, v: float32 ``(N, H)`` with contiguous columns; rows may be strided, so
            column slices of the fused ``(N, 3H)`` QKV projection are taken as is.
        offsets: integer ``(B+1,)``, ``0 = offsets[0] <= ... <= offsets[B] = N``.
        n_heads: number of heads, dividing ``H``.
        cos, sin: optional float32 ``(N, d/2)`` C-contiguous rotary tables, one row
            per token (the row of its position in its sequence), both or neither.
        out: optional float32 ``(N, H)`` destination (contiguous columns), not
            overlapping the inputs.

    Returns:
        float32 ``(N, H)`` (``out`` when given).

    Raises:
        ValueError: wrong dtype / layout / shape of any argument, bad offsets, or
            ``n_heads`` not dividing ``H``.
    """
    if not isinstance(q, np.ndarray) or q.ndim != 2:
        raise ValueError(f"attention: q: expected a 2-D float32 array, got {_describe(q)}")
    shape = q.shape
    for name, a in (("q", q), ("k", k), ("v", v)):
        _rows(f"attention: {name}", a, shape)
    N, H = shape
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1 \
            or H % n_heads:
        raise ValueError(f"attention: n_heads must be a positive divisor of {H}, got {n_heads!r}")
    d = H // int(n_heads)
    o = _offsets("attention", offsets, N)
    if (cos is None) != (sin is None):
        raise ValueError("attention: cos and sin must be given together")
    if cos is not None:
        if d % 2:
            raise ValueError(f"attention: rotary embedding needs an even head dimension, got {d}")
        for name, a in (("cos", cos), ("sin", sin)):
            _f32(f"attention: {name}", a, 2)
            if a.shape != (N, d // 2):
                raise ValueError(f"attention: {name} has shape {a.shape}, expected {(N, d // 2)}")
    if out is None:
        out = np.empty((N, H), dtype=np.float32)
    else:
        _rows("attention: out", out, shape)
        if not out.flags.writeable:
            raise ValueError("attention: out is read-only")
        if any(np.may_share_memory(out, a) for a in (q, k, v)):
            raise ValueError("attention: out overlaps q, k or v")
    _attn.attention(q, k, v, o, int(n_heads), cos, sin, out, _num_threads)
    return out


def segment_mean(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of each segment of rows (mean pooling of an unpadded batch), summed in double.

    Args:
        x: float32 ``(N, D)`` C-contiguous.
        offsets: integer ``(B+1,)``, ``0 = offsets[0] <= ... <= offsets[B] = N``.

    Returns:
        float32 ``(B, D)``; an empty segment gives a zero row.

    Raises:
        ValueError: wrong dtype / layout / rank, or bad offsets.
    """
    _f32("segment_mean: x", x, 2)
    o = _offsets("segment_mean", offsets, x.shape[0])
    out = np.empty((o.shape[0] - 1, x.shape[1]), dtype=np.float32)
    _attn.segment_mean(x, o, out, _num_threads)
    return out


# ------------------------------------------------------------ vector-search scan
def quantize_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u8 codes and per-row scales of unit vectors, for :func:`scan_codes`.

    Args:
        x: float32 ``(N, D)`` C-contiguous (rows should be unit length).

    Returns:
        ``(codes, scales)``: uint8 ``(N, D)`` with ``codes - 128 = round(x / scale)`` in
        [-127, 127], and float32 ``(N,)`` scales ``max|x_i| / 127`` (0 for a zero row).
    """
    _f32("quantize_codes: x", x, 2)
    codes = np.empty(x.shape, dtype=np.uint8)
    scales = np.zeros(x.shape[0], dtype=np.float32)  # (rows of length 0 keep scale 0)
    _vscan.quantize_rows(x, codes, scales, _num_threads)
    return codes, scales


def quantize_query(q: np.ndarray) -> tuple[np.ndarray, int, float]:
    """int8 codes of a query vector: ``(codes, sum of codes, scale)``, rounded exactly as
    :func:`quantize_codes` rounds stored rows (it computes them)."""
    _f32("quantize_query: q", q, 1)
    if q.size == 0 or not np.isfinite(q).all():
        raise ValueError("quantize_query: the query is zero or not finite")
    codes, scales = quantize_codes(q[None, :])
    if not scales[0] > 0.0:
        raise ValueError("quantize_query: the query is zero or not finite")
    qc = (codes[0].astype(np.int16) - 128).astype(np.int8)
    return qc, int(qc.sum(dtype=np.int64)), float(scales[0])


def scan_codes(q_codes: np.ndarray, q_sum: int, codes: np.ndarray, scales: np.ndarray,
               n: int | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """Approximate dot products of a quantized query with quantized rows.

    ``out[i] = scales[i] * (codes[i] . (q_codes) - 128 * q_sum)``, which is
    ``x_i . q / q_scale`` up to rounding: it ranks candidates; re-rank them exactly.

    Args:
        q_codes: int8 ``(D,)`` from :func:`quantize_query`; ``q_sum`` its sum.
        codes, scales: from :func:`quantize_codes` (``codes`` may have spare rows).
        n: score rows ``[0, n)`` (default all); ignored when ``rows`` is given.
        rows: int64 row numbers to score instead (a filtered scan), each in
            ``[0, codes.shape[0])``.

    Returns:
        float32 scores, shape ``(n,)`` or ``(len(rows),)``.

    Raises:
        ValueError: wrong dtype / layout / shape.  IndexError: a row out of range.
    """
    if not isinstance(q_codes, np.ndarray) or q_codes.dtype != np.int8 or q_codes.ndim != 1 \
            or not q_codes.flags.c_contiguous:
        raise ValueError(f"scan_codes: q_codes must be a C-contiguous 1-D int8 array, got {_describe(q_codes)}")
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2 \
            or not codes.flags.c_contiguous or codes.shape[1] != q_codes.shape[0]:
        raise ValueError(f"scan_codes: codes must be a C-contiguous uint8 (N, {q_codes.shape[0]}) "
                         f"array, got {_describe(codes)}")
    _f32("scan_codes: scales", scales, 1)
    if scales.shape[0] < codes.shape[0]:
        raise ValueError(f"scan_codes: {scales.shape[0]} scales for {codes.shape[0]} rows")
    if abs(int(q_sum)) > 127 * q_codes.shape[0]:
        raise ValueError(f"scan_codes: q_sum {q_sum} is not the sum of {q_codes.shape[0]} int8 codes")
    if rows is not None:
        if not isinstance(rows, np.ndarray) or rows.dtype != np.int64 or rows.ndim != 1:
            raise ValueError(f"scan_codes: rows must be a 1-D int64 array, got {_describe(rows)}")
        rows = np.ascontiguousarray(rows)
        out = np.empty(rows.shape[0], dtype=np.float32)
        _vscan.scan_rows(q_codes, int(q_sum), codes, scales, rows, out, _num_threads)
        return out
    n = codes.shape[0] if n is None else int(n)
    if not 0 <= n <= codes.shape[0]:
        raise ValueError(f"scan_codes: n={n} outside [0, {codes.shape[0]}]")
    out = np.empty(n, dtype=np.float32)
    _vscan.scan(q_codes, int(q_sum), codes, scales, out, n, _num_threads)
    return out
