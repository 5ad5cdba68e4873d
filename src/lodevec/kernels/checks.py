"""Argument checks every kernel wrapper runs in Python before the compiled code runs
without the GIL: dtype, contiguity, shapes, byte counts.  Messages name the tensor
and what was expected."""

from __future__ import annotations

import numpy as np

from ..gguf.constants import BLOCK_SIZE, SUPPORTED_TYPES, TYPE_SIZE, GGMLQuantizationType
from ..gguf.tensors import QuantTensor


def describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        layout = "C-contiguous" if a.flags.c_contiguous else "non-contiguous"
        return f"{a.dtype} array of shape {a.shape} ({layout})"
    return type(a).__name__


def f32(name: str, a: object, ndim: int | tuple[int, ...], *, writable: bool = False) -> np.ndarray:
    """Check ``a`` is a C-contiguous float32 ndarray with ``ndim`` dimensions."""
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim not in dims \
            or not a.flags.c_contiguous:
        want = " or ".join(f"{d}-D" for d in dims)  # built only on failure: hot path
        raise ValueError(f"{name}: expected a C-contiguous {want} float32 array, got {describe(a)}")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: the array is read-only but is written in place")
    return a


def vec(name: str, a: object, n: int) -> np.ndarray | None:
    """Optional float32 vector of length ``n``."""
    if a is None:
        return None
    f32(name, a, 1)
    if a.shape[0] != n:
        raise ValueError(f"{name}: expected {n} elements, got {a.shape[0]}")
    return a


def raw_rows(name: str, qtype: object, raw: object, rows: int | None, cols: int) -> tuple[int, np.ndarray]:
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
        raise ValueError(f"{name}: expected C-contiguous uint8 data, got {describe(raw)}")
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


def tensor(t: object) -> tuple[int, np.ndarray]:
    if not isinstance(t, QuantTensor):
        raise ValueError(f"expected a QuantTensor, got {type(t).__name__}")
    if t.rows < 0:
        raise ValueError(f"{t.name}: negative row count {t.rows}")
    return raw_rows(t.name, t.qtype, t.data, t.rows, t.cols)


def seq_offsets(name: str, offsets: object, n_rows: int) -> np.ndarray:
    """Validate sequence boundaries: 1-D integers, 0 = o[0] <= o[1] <= ... <= o[-1] = n_rows."""
    o = np.asarray(offsets)
    if o.ndim != 1 or o.size < 1 or not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"{name}: offsets must be a 1-D integer array of B+1 >= 1 boundaries, "
                         f"got {describe(o)}")
    if int(o[0]) != 0 or int(o[-1]) != n_rows:
        raise ValueError(f"{name}: offsets must run from 0 to {n_rows} (the row count), "
                         f"got {int(o[0])}..{int(o[-1])}")
    if o.size > 2 and (o[1:] < o[:-1]).any():  # two boundaries 0 <= n are ordered
        raise ValueError(f"{name}: offsets must be non-decreasing")
    return np.ascontiguousarray(o, dtype=np.int64)


def strided_rows(name: str, a: object, shape: tuple[int, int]) -> np.ndarray:
    """A float32 (n, H) matrix with contiguous columns; rows may be strided (a column
    slice of a wider matrix such as the fused QKV projection)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D float32 array, got {describe(a)}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if a.shape[0] and a.shape[1] and (a.strides[1] != 4 or (a.shape[0] > 1 and (
            a.strides[0] % 4 or a.strides[0] < 4 * a.shape[1]))):
        raise ValueError(f"{name}: columns must be contiguous and rows non-overlapping, "
                         f"got strides {a.strides}")
    return a
