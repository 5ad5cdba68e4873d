# cython: language_level=3
"""Kernels of the in-memory search tier (``lodevec.resident``): quantize unit vectors
to u8 codes and scan them with an int8 query (see lv_vscan.h for the arithmetic).

``lodevec.kernels`` validates dtypes and shapes; these functions re-check every size
they index with before releasing the GIL.
"""

cimport cython
from cython.parallel cimport prange
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t

cdef extern from "lv_vscan.h" nogil:
    int lv_vscan_vnni()
    int32_t lv_dot_u8s8(const uint8_t *c, const int8_t *q, Py_ssize_t n)
    void lv_quant_u8_row(const float *x, Py_ssize_t n, uint8_t *c, float *scale)

# rows per OpenMP work item: big enough to amortise scheduling, small enough to balance
cdef Py_ssize_t ROWS_PER_CHUNK = 512


def vnni():
    """True when the scan uses AVX-512 VNNI (else a portable C loop)."""
    return bool(lv_vscan_vnni())


def quantize_rows(const float[:, ::1] x, uint8_t[:, ::1] codes, float[::1] scales,
                  int nthreads):
    """codes[i], scales[i] <- the u8 codes and scale of row x[i], for every row of x."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], i
    if codes.shape[0] != n or codes.shape[1] != d or scales.shape[0] != n:
        raise ValueError("quantize_rows: codes must be (n, d) and scales (n,) like x")
    if n == 0 or d == 0:
        return
    with nogil:
        for i in prange(n, num_threads=nthreads, schedule="static"):
            lv_quant_u8_row(&x[i, 0], d, &codes[i, 0], &scales[i])


def scan(const int8_t[::1] q, int32_t qsum, const uint8_t[:, ::1] codes,
         const float[::1] scales, float[::1] out, Py_ssize_t n, int nthreads):
    """out[i] <- scales[i] * (codes[i] . q - 128 qsum) for i < n (score / query scale)."""
    cdef Py_ssize_t d = q.shape[0], i
    if codes.shape[1] != d or n < 0 or n > codes.shape[0] or n > scales.shape[0] \
            or n > out.shape[0]:
        raise ValueError("scan: shapes of q, codes, scales and out disagree")
    if n == 0:
        return
    cdef int32_t bias = 128 * qsum
    with nogil:
        for i in prange(n, num_threads=nthreads, schedule="static", chunksize=ROWS_PER_CHUNK):
            out[i] = scales[i] * <float>(lv_dot_u8s8(&codes[i, 0], &q[0], d) - bias)


def scan_rows(const int8_t[::1] q, int32_t qsum, const uint8_t[:, ::1] codes,
              const float[::1] scales, const int64_t[::1] rows, float[::1] out, int nthreads):
    """out[j] <- the score of row rows[j] (a filtered scan); rows must lie in [0, n)."""
    cdef Py_ssize_t d = q.shape[0], m = rows.shape[0], j, n = codes.shape[0]
    cdef int64_t r
    if codes.shape[1] != d or scales.shape[0] < n or out.shape[0] < m:
        raise ValueError("scan_rows: shapes of q, codes, scales and out disagree")
    for j in range(m):  # never index past the codes, whatever the caller passed
        r = rows[j]
        if r < 0 or r >= n:
            raise IndexError(f"scan_rows: row {r} outside [0, {n})")
    if m == 0:
        return
    cdef int32_t bias = 128 * qsum
    with nogil:
        for j in prange(m, num_threads=nthreads, schedule="static", chunksize=ROWS_PER_CHUNK):
            out[j] = scales[rows[j]] * <float>(lv_dot_u8s8(&codes[rows[j], 0], &q[0], d) - bias)
