"""Vector-search scans: u8 codes of stored unit vectors, int8 queries, and their dot
products (the resident tier's first pass; it re-ranks candidates exactly)."""

from __future__ import annotations

import numpy as np

from . import checks, runtime


def quantize_codes(x: np.ndarray, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """u8 codes and per-row scales of unit vectors, for :func:`scan_codes`.

    Args:
        x: float32 ``(N, D)`` C-contiguous (rows should be unit length).

    Returns:
        ``(codes, scales)``: uint8 ``(N, D)`` with ``codes - 128 = round(x / scale)`` in
        [-127, 127], and float32 ``(N,)`` scales ``max|x_i| / 127`` (0 for a zero row).
    """
    checks.f32("quantize_codes: x", x, 2)
    codes = np.empty(x.shape, dtype=np.uint8)
    scales = np.zeros(x.shape[0], dtype=np.float32)  # (rows of length 0 keep scale 0)
    runtime.compiled.vscan.quantize_rows(x, codes, scales, runtime.resolve(threads))
    return codes, scales


def quantize_query(q: np.ndarray, *, threads: int | None = None) -> tuple[np.ndarray, int, float]:
    """int8 codes of a query vector: ``(codes, sum of codes, scale)``, rounded exactly as
    :func:`quantize_codes` rounds stored rows (it computes them)."""
    checks.f32("quantize_query: q", q, 1)
    if q.size == 0 or not np.isfinite(q).all():
        raise ValueError("quantize_query: the query is zero or not finite")
    codes, scales = quantize_codes(q[None, :], threads=threads)
    if not scales[0] > 0.0:
        raise ValueError("quantize_query: the query is zero or not finite")
    qc = (codes[0].astype(np.int16) - 128).astype(np.int8)
    return qc, int(qc.sum(dtype=np.int64)), float(scales[0])


def scan_codes(q_codes: np.ndarray, q_sum: int, codes: np.ndarray, scales: np.ndarray,
               n: int | None = None, rows: np.ndarray | None = None, *, threads: int | None = None) -> np.ndarray:
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
        raise ValueError(f"scan_codes: q_codes must be a C-contiguous 1-D int8 array, got {checks.describe(q_codes)}")
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2 \
            or not codes.flags.c_contiguous or codes.shape[1] != q_codes.shape[0]:
        raise ValueError(f"scan_codes: codes must be a C-contiguous uint8 (N, {q_codes.shape[0]}) "
                         f"array, got {checks.describe(codes)}")
    checks.f32("scan_codes: scales", scales, 1)
    if scales.shape[0] < codes.shape[0]:
        raise ValueError(f"scan_codes: {scales.shape[0]} scales for {codes.shape[0]} rows")
    if abs(int(q_sum)) > 127 * q_codes.shape[0]:
        raise ValueError(f"scan_codes: q_sum {q_sum} is not the sum of {q_codes.shape[0]} int8 codes")
    if rows is not None:
        if not isinstance(rows, np.ndarray) or rows.dtype != np.int64 or rows.ndim != 1:
            raise ValueError(f"scan_codes: rows must be a 1-D int64 array, got {checks.describe(rows)}")
        rows = np.ascontiguousarray(rows)
        out = np.empty(rows.shape[0], dtype=np.float32)
        runtime.compiled.vscan.scan_rows(q_codes, int(q_sum), codes, scales, rows, out, runtime.resolve(threads))
        return out
    n = codes.shape[0] if n is None else int(n)
    if not 0 <= n <= codes.shape[0]:
        raise ValueError(f"scan_codes: n={n} outside [0, {codes.shape[0]}]")
    out = np.empty(n, dtype=np.float32)
    runtime.compiled.vscan.scan(q_codes, int(q_sum), codes, scales, out, n, runtime.resolve(threads))
    return out
