# cython: language_level=3
"""y = x @ dequant(W).T + bias on AMX tiles, int8 activations (lv_amx.h).

Built only for the ``amx`` ISA level (``-mamx-tile -mamx-int8`` on top of the AVX-512
level's flags); every other kernel of that level is the AVX-512 one.  The tile
permission (Linux ``arch_prctl(ARCH_REQ_XCOMP_PERM)``) is requested by the CPU probe
before this module is ever imported (kernels/isa.py).

Weights are repacked once (:func:`repack`: panels of 16 rows, two byte planes, two
bytes per weight; kernels/quant.py keeps them with the tensor) so a forward reads the
tile layout straight from memory: unpacking K-quant blocks per call measured as slow
as the VNNI path at small n, where it is all the work (docs/performance.md).

Work split: x is quantized once per call into groups of 16 rows (the B tiles).  Each
thread takes a contiguous run of weight panels (the A tiles) and streams x past them a
block of groups at a time (two groups per tile pass: four C tiles).  Each output
element is computed by one thread with a fixed sequence of operations, so results
depend neither on the thread count nor on n.
"""

import numpy as np

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdint cimport int8_t, uint8_t
from libc.stdlib cimport free

cdef extern from "lv_amx.h" nogil:
    ctypedef struct lv_amx_x:
        pass
    ctypedef struct lv_amx_w:
        pass
    int lv_amx_available()
    size_t lv_amx_x_size()
    size_t lv_amx_w_size()
    void lv_amx_configure()
    void lv_amx_release()
    void lv_amx_quant_group(const float *x, Py_ssize_t K, Py_ssize_t nr, lv_amx_x *out,
                            int8_t *tmp)
    Py_ssize_t lv_amx_row_bytes(int qtype, Py_ssize_t K)
    int lv_amx_unpack_panel(int qtype, const uint8_t *w, Py_ssize_t rb, Py_ssize_t nr,
                            Py_ssize_t nb, lv_amx_w *u, uint8_t *lo, uint8_t *hi)
    void lv_amx_panel(int qtype, const uint8_t *lo, const uint8_t *hi, const lv_amx_w *u,
                      const lv_amx_x *x0, const lv_amx_x *x1, Py_ssize_t nb, float *out,
                      Py_ssize_t ldo, Py_ssize_t nr0, Py_ssize_t nr1, Py_ssize_t ncols,
                      const float *bias)
    void lv_omp_barrier()
    Py_ssize_t lv_amx_first(Py_ssize_t n, int next)

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)

# Quantized x per pass over a thread's weight panels (kept in L2 while they pass by;
# streaming all of a large batch past every panel measured slower, docs/performance.md)
cdef Py_ssize_t X_BLOCK_BYTES = 512 * 1024

#: floats per (panel, block) of repacked scales (lv_amx_w: d[16], mn[8][16])
W_FLOATS = 144

# GGML type ids: Q8_0, Q4_K, Q5_K, Q6_K
_TYPES = (8, 12, 13, 14)


def available():
    """Whether the AMX kernels were compiled in (the ``amx`` level)."""
    return bool(lv_amx_available())


def supported_types():
    """GGML type ids the AMX path handles: Q8_0, Q4_K, Q5_K, Q6_K."""
    return _TYPES


def _check(Py_ssize_t n, Py_ssize_t K, int qtype, Py_ssize_t M, Py_ssize_t cols, out, bias):
    if not lv_amx_available():
        raise RuntimeError("AMX matmul kernels are not compiled in (the amx ISA level)")
    if qtype not in _TYPES:
        raise ValueError(f"AMX matmul: unsupported GGML type id {qtype}")
    if cols != K or K <= 0 or K % 256:
        raise ValueError(f"AMX matmul: x has {K} columns, weight has {cols} (need a multiple of 256)")
    if out is not None and (out.shape[0] != n or out.shape[1] != M):
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {M})")
    if bias is not None and bias.shape[0] != M:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {M}")


@cython.boundscheck(False)
@cython.wraparound(False)
def repack(int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols, int nthreads=1):
    """Unpack a weight (M, row_bytes) of K = cols values per row into the tile layout.

    Returns ``(planes, scales)``: ``planes`` uint8 ``(2, Mp, K)`` (Mp = M rounded up to
    16; the low and high bytes of the scaled quants, natural order, zero rows past M)
    and ``scales`` float32 ``(Mp / 16, K / 256, W_FLOATS)`` (per panel and block).
    That is ``2 + 2.25 / 16`` bytes per weight.

    Raises ValueError as :func:`matmul_amx`.
    """
    cdef Py_ssize_t M = w.shape[0]
    _check(0, cols, qtype, M, cols, None, None)
    if w.shape[1] != lv_amx_row_bytes(qtype, cols):
        raise ValueError(f"AMX matmul: weight rows have {w.shape[1]} bytes, "
                         f"expected {lv_amx_row_bytes(qtype, cols)}")
    cdef Py_ssize_t K = cols, nb = cols // 256, rb = w.shape[1]
    cdef Py_ssize_t npanels = (M + 15) // 16
    planes = np.zeros((2, npanels * 16, K), np.uint8)
    scales = np.zeros((npanels, nb, W_FLOATS), np.float32)
    if M == 0:
        return planes, scales
    cdef uint8_t[:, :, ::1] pl = planes
    cdef float[:, :, ::1] sc = scales
    cdef const uint8_t *wp = &w[0, 0]
    cdef Py_ssize_t p
    cdef int bad = 0
    with nogil:
        for p in prange(npanels, schedule="static", num_threads=max(nthreads, 1)):
            if lv_amx_unpack_panel(qtype, wp + p * 16 * rb, rb, min(16, M - p * 16), nb,
                                   <lv_amx_w *>&sc[p, 0, 0], &pl[0, p * 16, 0],
                                   &pl[1, p * 16, 0]) != 0:
                bad += 1
    if bad:
        raise ValueError(f"AMX matmul: cannot unpack GGML type id {qtype}")
    return planes, scales


@cython.boundscheck(False)
@cython.wraparound(False)
def matmul_amx(const float[:, ::1] x, int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols,
               const float[::1] bias, float[:, ::1] out, int nthreads=1):
    """out (n, M) = x (n, K) @ dequant(w (M, row_bytes), K).T + bias on AMX tiles,
    unpacking each panel of 16 weight rows just before its tiles run (a one-panel
    buffer per thread).  Bit-identical to :func:`matmul_packed` of :func:`repack`: it
    reads 4.5-6.6 bits per weight instead of 16, and at small n (one x group) reading
    the weights is the work; at larger n the repacked form saves the unpacking.

    Raises ValueError for a type not in supported_types(), K not a multiple of 256,
    or inconsistent shapes; RuntimeError when the kernels are not compiled in.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t K = x.shape[1]
    cdef Py_ssize_t M = w.shape[0]
    _check(n, K, qtype, M, cols, out, bias)
    if w.shape[1] != lv_amx_row_bytes(qtype, K):
        raise ValueError(f"AMX matmul: weight rows have {w.shape[1]} bytes, "
                         f"expected {lv_amx_row_bytes(qtype, K)}")
    if n == 0 or M == 0:
        return
    nthreads = max(nthreads, 1)
    cdef Py_ssize_t nb = K // 256
    cdef Py_ssize_t rb = w.shape[1]
    cdef Py_ssize_t ngroups = (n + 15) // 16
    cdef Py_ssize_t npanels = (M + 15) // 16
    cdef const float *xp = &x[0, 0]
    cdef const uint8_t *wp = &w[0, 0]
    cdef float *op = &out[0, 0]
    cdef const float *bp = &bias[0] if bias is not None else NULL
    cdef lv_amx_x *xq = <lv_amx_x *>aligned_alloc(64, ngroups * nb * lv_amx_x_size())
    if xq == NULL:
        raise MemoryError("AMX matmul: cannot allocate the quantized activations")
    cdef Py_ssize_t g, p, g0, nr0, nr1, p0, ncols
    cdef lv_amx_w *u = NULL
    cdef uint8_t *lo = NULL
    cdef uint8_t *hi = NULL
    cdef int8_t *tmp = NULL
    cdef int failed[1]     # set by a thread that could not allocate (shared, not private)
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        u = <lv_amx_w *>aligned_alloc(64, nb * lv_amx_w_size())
        lo = <uint8_t *>aligned_alloc(64, 16 * K)
        hi = <uint8_t *>aligned_alloc(64, 16 * K)
        tmp = <int8_t *>aligned_alloc(64, 16 * 256)
        lv_amx_configure()
        for g in prange(ngroups, schedule="static"):
            if tmp != NULL:
                lv_amx_quant_group(xp + g * 16 * K, K, min(16, n - g * 16), xq + g * nb, tmp)
            else:
                failed[0] = 1
        lv_omp_barrier()    # every x group is quantized before any panel reads them
        for p in prange(npanels, schedule="static"):
            p0 = p * 16
            ncols = min(16, M - p0)
            if u == NULL or lo == NULL or hi == NULL or \
                    lv_amx_unpack_panel(qtype, wp + p0 * rb, rb, ncols, nb, u, lo, hi) != 0:
                failed[0] = 1
                continue
            g0 = 0
            while g0 < ngroups:
                nr0 = min(16, n - g0 * 16)
                if g0 + 1 < ngroups:
                    nr1 = min(16, n - (g0 + 1) * 16)
                    lv_amx_panel(qtype, lo, hi, u, xq + g0 * nb, xq + (g0 + 1) * nb, nb,
                                 op + g0 * 16 * M + p0, M, nr0, nr1, ncols,
                                 bp + p0 if bp != NULL else NULL)
                else:
                    lv_amx_panel(qtype, lo, hi, u, xq + g0 * nb, NULL, nb, op + g0 * 16 * M + p0,
                                 M, nr0, 0, ncols, bp + p0 if bp != NULL else NULL)
                g0 = g0 + 2
        lv_amx_release()
        free(u)
        free(lo)
        free(hi)
        free(tmp)
    free(xq)
    if failed[0]:
        raise MemoryError("AMX matmul: cannot allocate the per-thread buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def matmul_packed(const float[:, ::1] x, int qtype, const uint8_t[:, :, ::1] planes,
                  const float[:, :, ::1] scales, Py_ssize_t M, const float[::1] bias,
                  float[:, ::1] out, int nthreads=1):
    """out (n, M) = x (n, K) @ W.T + bias for a weight repacked by :func:`repack`.

    Raises ValueError when ``planes`` / ``scales`` do not have the shapes :func:`repack`
    gives for (M, K), or as :func:`matmul_amx`.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t K = x.shape[1]
    _check(n, K, qtype, M, K, out, bias)
    cdef Py_ssize_t npanels = (M + 15) // 16
    cdef Py_ssize_t nb = K // 256
    if (planes.shape[0] != 2 or planes.shape[1] != npanels * 16 or planes.shape[2] != K
            or scales.shape[0] != npanels or scales.shape[1] != nb or scales.shape[2] != W_FLOATS):
        raise ValueError(f"AMX matmul: repacked weight has planes {tuple(planes.shape)[:3]} and "
                         f"scales {tuple(scales.shape)[:3]}, expected (2, {npanels * 16}, {K}) "
                         f"and ({npanels}, {nb}, {W_FLOATS})")
    if n == 0 or M == 0:
        return
    nthreads = max(nthreads, 1)
    cdef Py_ssize_t ngroups = (n + 15) // 16
    # x groups per pass over a thread's weight panels: a block of ~X_BLOCK_BYTES stays in L2
    cdef Py_ssize_t xgb = max(2, X_BLOCK_BYTES // (nb * <Py_ssize_t>lv_amx_x_size()) // 2 * 2)
    cdef const float *xp = &x[0, 0]
    cdef const uint8_t *lo = &planes[0, 0, 0]
    cdef const uint8_t *hi = &planes[1, 0, 0]
    cdef const lv_amx_w *u = <const lv_amx_w *>&scales[0, 0, 0]
    cdef float *op = &out[0, 0]
    cdef const float *bp = &bias[0] if bias is not None else NULL
    cdef lv_amx_x *xq = <lv_amx_x *>aligned_alloc(64, ngroups * nb * lv_amx_x_size())
    if xq == NULL:
        raise MemoryError("AMX matmul: cannot allocate the quantized activations")
    cdef Py_ssize_t g, p, g0, g1, x0, nr0, nr1, p0, ncols, pb, pe
    cdef int8_t *tmp = NULL
    cdef int failed[1]     # set by a thread that could not allocate (shared, not private)
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        pb = lv_amx_first(npanels, 0)      # this thread's panels, contiguous
        pe = lv_amx_first(npanels, 1)
        tmp = <int8_t *>aligned_alloc(64, 16 * 256)
        lv_amx_configure()
        for g in prange(ngroups, schedule="static"):
            if tmp != NULL:
                lv_amx_quant_group(xp + g * 16 * K, K, min(16, n - g * 16), xq + g * nb, tmp)
            else:
                failed[0] = 1
        lv_omp_barrier()    # every x group is quantized before any panel reads them
        x0 = 0
        while x0 < ngroups:
            g1 = min(x0 + xgb, ngroups)
            for p in range(pb, pe):
                p0 = p * 16
                ncols = min(16, M - p0)
                g0 = x0
                while g0 < g1:
                    nr0 = min(16, n - g0 * 16)
                    if g0 + 1 < g1:
                        nr1 = min(16, n - (g0 + 1) * 16)
                        lv_amx_panel(qtype, lo + p0 * K, hi + p0 * K, u + p * nb,
                                     xq + g0 * nb, xq + (g0 + 1) * nb, nb,
                                     op + g0 * 16 * M + p0, M, nr0, nr1, ncols,
                                     bp + p0 if bp != NULL else NULL)
                    else:
                        lv_amx_panel(qtype, lo + p0 * K, hi + p0 * K, u + p * nb,
                                     xq + g0 * nb, NULL, nb, op + g0 * 16 * M + p0, M,
                                     nr0, 0, ncols, bp + p0 if bp != NULL else NULL)
                    g0 = g0 + 2
            x0 = g1
        lv_amx_release()
        free(tmp)
    free(xq)
    if failed[0]:
        raise MemoryError("AMX matmul: cannot allocate the per-thread buffers")
