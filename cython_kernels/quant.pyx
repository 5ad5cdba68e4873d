# cython: language_level=3
"""Dequantization kernels: whole tensors and selected rows (token-embedding lookup).

The per-block code lives in ``dequant.pxd`` (shared with ``matmul``).  This module
is compiled with ``-ffp-contract=off`` so that results are bit-identical to
``gguf.quants.dequantize``.  The def functions re-check every size they rely on
before releasing the GIL; ``lodevec.kernels`` checks them first with messages that
name the tensor.
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t

from dequant cimport (
    T_F16, T_F32, T_Q2_K, T_Q3_K, T_Q4_0, T_Q4_1, T_Q4_K, T_Q5_0, T_Q5_1, T_Q5_K, T_Q6_K,
    T_Q8_0, block_bytes, block_elems, dequant_row,
)

cdef extern from "lv_simd.h" nogil:
    int lv_openmp_enabled()
    int lv_omp_max_threads()

_SUPPORTED = (T_F32, T_F16, T_Q4_0, T_Q4_1, T_Q5_0, T_Q5_1, T_Q8_0,
              T_Q2_K, T_Q3_K, T_Q4_K, T_Q5_K, T_Q6_K)


def block_layout():
    """``{ggml type id: (elements per block, bytes per block)}`` as compiled in."""
    return {int(t): (block_elems(t), block_bytes(t)) for t in _SUPPORTED}


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(lv_openmp_enabled())


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return lv_omp_max_threads()


cdef Py_ssize_t _check(int qtype, const uint8_t[:, ::1] raw, Py_ssize_t cols, float[:, ::1] out,
                       Py_ssize_t out_rows) except -1:
    """Validate sizes for ``raw`` (rows, row_bytes) -> ``out`` (out_rows, cols); return row_bytes."""
    cdef int be = block_elems(qtype)
    if be == 0:
        raise ValueError(f"unsupported GGML type id {qtype}")
    if cols <= 0 or cols % be:
        raise ValueError(f"{cols} columns is not a positive multiple of the block size {be}")
    cdef Py_ssize_t row_bytes = cols // be * block_bytes(qtype)
    if raw.shape[1] != row_bytes:
        raise ValueError(f"raw rows have {raw.shape[1]} bytes, expected {row_bytes}")
    if out.shape[0] != out_rows or out.shape[1] != cols:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({out_rows}, {cols})")
    return row_bytes


def dequantize_rows(int qtype, const uint8_t[:, ::1] raw, Py_ssize_t cols, float[:, ::1] out,
                    int nthreads=1, bint simd=True):
    """Dequantize every row of ``raw`` (rows, row_bytes) uint8 into ``out`` (rows, cols) float32.

    ``simd=False`` forces the scalar block code (the vector code gives the same bits).
    """
    cdef Py_ssize_t rows = raw.shape[0]
    cdef Py_ssize_t row_bytes = _check(qtype, raw, cols, out, rows)
    cdef Py_ssize_t r
    if rows == 0:
        return
    cdef const uint8_t *src = &raw[0, 0]
    cdef float *dst = &out[0, 0]
    with nogil:
        for r in prange(rows, num_threads=max(nthreads, 1), schedule="static"):
            dequant_row(qtype, src + r * row_bytes, dst + r * cols, cols, simd)


def get_rows(int qtype, const uint8_t[:, ::1] raw, Py_ssize_t cols, const int64_t[::1] ids,
             float[:, ::1] out, int nthreads=1):
    """``out[i] = dequant(raw[ids[i]])``; every id must be in ``[0, rows)`` (IndexError)."""
    cdef Py_ssize_t rows = raw.shape[0]
    cdef Py_ssize_t n = ids.shape[0]
    cdef Py_ssize_t row_bytes = _check(qtype, raw, cols, out, n)
    cdef Py_ssize_t i
    for i in range(n):  # with the GIL, before any pointer arithmetic
        if ids[i] < 0 or ids[i] >= rows:
            raise IndexError(f"row id {ids[i]} out of range [0, {rows})")
    if n == 0:
        return
    cdef const uint8_t *src = &raw[0, 0]
    cdef const int64_t *idp = &ids[0]
    cdef float *dst = &out[0, 0]
    with nogil:
        for i in prange(n, num_threads=max(nthreads, 1), schedule="static"):
            dequant_row(qtype, src + idp[i] * row_bytes, dst + i * cols, cols)
