# cython: language_level=3
"""y = x @ dequant(W).T + bias on AMX tiles, int8 activations (lv_amx.h).

Built only for the ``amx`` ISA level (``-mamx-tile -mamx-int8`` on top of the AVX-512
level's flags); every other kernel of that level is the AVX-512 one.  The tile
permission (Linux ``arch_prctl(ARCH_REQ_XCOMP_PERM)``) is requested by the CPU probe
before this module is ever imported (kernels/isa.py).

Work split: x is quantized once per call into groups of 16 rows (the A tiles).  The
weight rows are cut into panels of 16 (the B tiles); threads take contiguous runs of
panels statically, unpack each panel once per call into a per-thread buffer, and
stream every x group past it (two groups per pass: four C tiles).  Each output
element is computed by one thread with a fixed sequence of operations, so results
depend neither on the thread count nor on n.
"""

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

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)

# GGML type ids: Q8_0, Q4_K, Q5_K, Q6_K
_TYPES = (8, 12, 13, 14)


def available():
    """Whether the AMX kernels were compiled in (the ``amx`` level)."""
    return bool(lv_amx_available())


def supported_types():
    """GGML type ids the AMX path handles: Q8_0, Q4_K, Q5_K, Q6_K."""
    return _TYPES


@cython.boundscheck(False)
@cython.wraparound(False)
def matmul_amx(const float[:, ::1] x, int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols,
               const float[::1] bias, float[:, ::1] out, int nthreads=1):
    """out (n, M) = x (n, K) @ dequant(w (M, row_bytes), K).T + bias on AMX tiles.

    Raises ValueError for a type not in supported_types(), K not a multiple of 256,
    or inconsistent shapes; RuntimeError when the kernels are not compiled in.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t K = x.shape[1]
    cdef Py_ssize_t M = w.shape[0]
    if not lv_amx_available():
        raise RuntimeError("AMX matmul kernels are not compiled in (the amx ISA level)")
    if qtype not in _TYPES:
        raise ValueError(f"AMX matmul: unsupported GGML type id {qtype}")
    if cols != K or K <= 0 or K % 256:
        raise ValueError(f"AMX matmul: x has {K} columns, weight has {cols} (need a multiple of 256)")
    if w.shape[1] != lv_amx_row_bytes(qtype, K):
        raise ValueError(f"AMX matmul: weight rows have {w.shape[1]} bytes, "
                         f"expected {lv_amx_row_bytes(qtype, K)}")
    if out.shape[0] != n or out.shape[1] != M:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {M})")
    if bias is not None and bias.shape[0] != M:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {M}")
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
    cdef size_t xsz = ngroups * nb * lv_amx_x_size()
    cdef size_t usz = nb * lv_amx_w_size()
    cdef lv_amx_x *xq = <lv_amx_x *>aligned_alloc(64, xsz)
    if xq == NULL:
        raise MemoryError("AMX matmul: cannot allocate the quantized activations")
    cdef Py_ssize_t g, p, g0, nr0, nr1, p0, ncols
    cdef lv_amx_w *u = NULL
    cdef uint8_t *lo = NULL
    cdef uint8_t *hi = NULL
    cdef int8_t *tmp = NULL
    cdef int failed = 0
    cdef int qfailed = 0
    with nogil, parallel(num_threads=nthreads):
        u = <lv_amx_w *>aligned_alloc(64, usz)
        lo = <uint8_t *>aligned_alloc(64, 16 * K)     # the panel's two byte planes
        hi = <uint8_t *>aligned_alloc(64, 16 * K)
        tmp = <int8_t *>aligned_alloc(64, 16 * 256)
        lv_amx_configure()
        for g in prange(ngroups, schedule="static"):
            if tmp != NULL:
                lv_amx_quant_group(xp + g * 16 * K, K, min(16, n - g * 16), xq + g * nb, tmp)
            else:
                qfailed += 1
        lv_omp_barrier()    # every x group is quantized before any panel reads them
        for p in prange(npanels, schedule="static"):
            p0 = p * 16
            ncols = min(16, M - p0)
            if u == NULL or lo == NULL or hi == NULL or \
                    lv_amx_unpack_panel(qtype, wp + p0 * rb, rb, ncols, nb, u, lo, hi) != 0:
                failed += 1
                continue
            for g0 in range(0, ngroups, 2):
                nr0 = min(16, n - g0 * 16)
                if g0 + 1 < ngroups:
                    nr1 = min(16, n - (g0 + 1) * 16)
                    lv_amx_panel(qtype, lo, hi, u, xq + g0 * nb, xq + (g0 + 1) * nb, nb,
                                 op + g0 * 16 * M + p0, M, nr0, nr1, ncols,
                                 bp + p0 if bp != NULL else NULL)
                else:
                    lv_amx_panel(qtype, lo, hi, u, xq + g0 * nb, NULL, nb, op + g0 * 16 * M + p0, M,
                                 nr0, 0, ncols, bp + p0 if bp != NULL else NULL)
        lv_amx_release()
        free(u)
        free(lo)
        free(hi)
        free(tmp)
    free(xq)
    if failed or qfailed:
        raise MemoryError("AMX matmul: cannot allocate the per-thread buffers")
