# cython: language_level=3
"""y = x @ dequant(W).T + bias with int8 activations (any n), AVX-512 VNNI or AVX2.

The llama.cpp scheme: x is quantized once per call, per row, into
Q8_K-style blocks (int8 values, one f32 scale per 256, int16 sums per 16) in a
shared buffer; then output rows (weight rows) are split statically over the
threads: each weight row is unpacked once into u8 quants + per-lane scales (a few
KiB, L1) and dotted with every x row by VPDPBUSD (lv_q8.h).  Work items (x row
block, 32 weight rows) are split statically: contiguous ranges, so the two
threads' output tiles meet once (handing them out dynamically scaled far worse on 2
threads: false sharing of out, see docs/performance.md); each output element is computed
by one thread with a fixed sequence of operations, so results depend neither on
the thread count nor on n (a row's result is the same alone or in a batch).  Supported weight
types: Q4_K, Q5_K, Q6_K, Q8_0 with K a multiple of 256; everything else stays on the
exact f32 path (matmul.pyx).  The result carries the activation quantization error
(relative ~1e-3..1e-2 of |x|.|w| per output), as llama.cpp's does.
"""

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdint cimport int16_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from "lv_q8.h" nogil:
    ctypedef struct lv_q8x:
        pass
    ctypedef struct lv_q8w:
        pass
    int lv_q8_available()
    int lv_q8_avxvnni_built()
    size_t lv_q8x_size()
    size_t lv_q8w_size()
    void lv_q8_quant_row(const float *x, Py_ssize_t K, lv_q8x *out)
    int lv_q8_unpack_row(int qtype, const uint8_t *w, Py_ssize_t nb, lv_q8w *u)
    void lv_q8_dot_rows(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t n,
                        int qtype, float *out, Py_ssize_t ldo, float bias, int vnni)
    void lv_q8_export(const lv_q8w *u, Py_ssize_t nb, int qtype, int16_t *q, float *scl, float *mnf)
    void lv_omp_barrier()

cdef extern from "stdlib.h" nogil:
    void *aligned_alloc(size_t alignment, size_t size)


# Quantized x rows per work item: ~X_BLOCK_BYTES, so a block stays in L2 while
# W_ROWS weight rows pass over it (without blocking, n = 2048 ran at 45-72 GFLOP/s
# instead of ~180: x streamed from L3/DRAM once per weight row).  A weight row is
# unpacked again for every x block (1 / block rows of the work).
cdef Py_ssize_t X_BLOCK_BYTES = 256 * 1024
cdef Py_ssize_t W_ROWS = 32


# 1: the AVX2 level runs its AVX-VNNI dot loop (set by configure() from the CPU's features)
cdef int _avxvnni = 0


def available():
    """Whether the int8 kernels were compiled in (AVX-512 F/BW/VL + VNNI, or AVX2 + FMA)."""
    return bool(lv_q8_available())


def configure(features):
    """Pick the dot loop for the usable CPU ``features`` (names as lodevec._kernels.cpu).

    Called once when the level is loaded (lodevec.kernels.isa.load): the AVX2 level
    runs VPDPBUSD on ymm (AVX-VNNI) where the CPU has it.  Both loops give the same bits.
    """
    global _avxvnni
    _avxvnni = 1 if lv_q8_avxvnni_built() and "avxvnni" in features else 0


def dot_variant():
    """The int8 dot instructions in use: ``"avx512vnni"``, ``"avxvnni"`` (the AVX2
    level on a CPU with AVX-VNNI), ``"avx2"`` (VPMADDUBSW + VPMADDWD) or ``"none"``."""
    if lv_q8_available() == 1:
        return "avx512vnni"
    if lv_q8_available() == 2:
        return "avxvnni" if _avxvnni else "avx2"
    return "none"


#: GGML type ids of the int8 path: Q8_0, Q4_K, Q5_K, Q6_K
TYPES = (8, 12, 13, 14)


def supported_types():
    """GGML type ids the int8 path handles: Q8_0, Q4_K, Q5_K, Q6_K."""
    return TYPES


cdef Py_ssize_t _row_bytes(int qtype, Py_ssize_t K):
    if qtype == 12:
        return K // 256 * 144
    if qtype == 13:
        return K // 256 * 176
    if qtype == 14:
        return K // 256 * 210
    if qtype == 8:
        return K // 32 * 34
    return -1


@cython.boundscheck(False)
@cython.wraparound(False)
def matmul_q8(const float[:, ::1] x, int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols,
              const float[::1] bias, float[:, ::1] out, int nthreads=1):
    """out (n, M) = x (n, K) @ dequant(w (M, row_bytes), K).T + bias, int8 activations.

    Raises ValueError for a type not in supported_types(), K not a multiple of 256,
    or inconsistent shapes; RuntimeError when the kernels are not compiled in.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t K = x.shape[1]
    cdef Py_ssize_t M = w.shape[0]
    if not lv_q8_available():
        raise RuntimeError("int8 matmul kernels are not compiled in (need AVX2 or AVX-512 VNNI)")
    if qtype not in TYPES:
        raise ValueError(f"int8 matmul: unsupported GGML type id {qtype}")
    if cols != K or K <= 0 or K % 256:
        raise ValueError(f"int8 matmul: x has {K} columns, weight has {cols} (need a multiple of 256)")
    if w.shape[1] != _row_bytes(qtype, K):
        raise ValueError(f"int8 matmul: weight rows have {w.shape[1]} bytes, "
                         f"expected {_row_bytes(qtype, K)}")
    if out.shape[0] != n or out.shape[1] != M:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {M})")
    if bias is not None and bias.shape[0] != M:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {M}")
    if n == 0 or M == 0:
        return
    nthreads = max(nthreads, 1)

    cdef Py_ssize_t nb = K // 256
    cdef Py_ssize_t rb = w.shape[1]
    cdef const float *xp = &x[0, 0]
    cdef const uint8_t *wp = &w[0, 0]
    cdef float *op = &out[0, 0]
    cdef const float *bp = &bias[0] if bias is not None else NULL
    cdef size_t xsz = n * nb * lv_q8x_size()
    cdef size_t usz = nb * lv_q8w_size()
    cdef lv_q8x *xq = <lv_q8x *>aligned_alloc(64, xsz)
    if xq == NULL:
        raise MemoryError("int8 matmul: cannot allocate the quantized activations")
    # work items = (x row block of ~X_BLOCK_BYTES, W_ROWS weight rows), x block major
    cdef Py_ssize_t xrows = max(4, (X_BLOCK_BYTES // (nb * <Py_ssize_t>lv_q8x_size())) // 4 * 4)
    cdef Py_ssize_t nxb = (n + xrows - 1) // xrows
    xrows = ((n + nxb - 1) // nxb + 3) // 4 * 4    # equal blocks: static split stays balanced
    nxb = (n + xrows - 1) // xrows
    cdef Py_ssize_t nwt = (M + W_ROWS - 1) // W_ROWS
    cdef Py_ssize_t i, j, t, xb, i0, ni, j0, j1
    cdef lv_q8w *u = NULL
    cdef float *tilebuf = NULL
    cdef int failed = 0
    cdef int vnni = _avxvnni
    with nogil, parallel(num_threads=nthreads):
        u = <lv_q8w *>aligned_alloc(64, usz)
        tilebuf = <float *>malloc(xrows * W_ROWS * sizeof(float))
        for i in prange(n, schedule="static"):
            lv_q8_quant_row(xp + i * K, K, xq + i * nb)
        lv_omp_barrier()    # every x row is quantized before any weight row reads them
        for t in prange(nxb * nwt, schedule="static"):
            xb = t // nwt
            i0 = xb * xrows
            ni = min(xrows, n - i0)
            j0 = (t % nwt) * W_ROWS
            j1 = min(j0 + W_ROWS, M)
            if u == NULL or tilebuf == NULL:
                failed += 1
                continue
            for j in range(j0, j1):
                if lv_q8_unpack_row(qtype, wp + j * rb, nb, u) != 0:
                    failed += 1
                else:
                    lv_q8_dot_rows(u, nb, xq + i0 * nb, ni, qtype, tilebuf + (j - j0), W_ROWS,
                                   bp[j] if bp != NULL else 0.0, vnni)
            # the item's (ni, j1 - j0) outputs leave the thread row by row: column
            # writes straight into out would share cache lines with the other thread
            for i in range(ni):
                memcpy(op + (i0 + i) * M + j0, tilebuf + i * W_ROWS, (j1 - j0) * sizeof(float))
        free(u)
        free(tilebuf)
    free(xq)
    if failed:
        raise MemoryError("int8 matmul: cannot allocate the per-thread buffers")


def unpack_rows(int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols):
    """The int8 path's unpacked weight rows, in natural element order (tests).

    Returns ``(q, scl, mnf)``: int16 ``(M, cols)`` quants (u8 operands; Q8_0 signed),
    float32 ``(M, cols // 16)`` per-group scales and offsets, so that the weight is
    ``scl * q - mnf`` per group of 16 (Q6_K: ``scl * (q - 32)``, ``mnf = 32 scl``).
    """
    import numpy as np
    if not lv_q8_available():
        raise RuntimeError("int8 matmul kernels are not compiled in (need AVX2 or AVX-512 VNNI)")
    if qtype not in TYPES or cols <= 0 or cols % 256 or w.shape[1] != _row_bytes(qtype, cols):
        raise ValueError(f"unpack_rows: type {qtype}, {cols} columns, {w.shape[1]} bytes per row")
    cdef Py_ssize_t M = w.shape[0], nb = cols // 256, j
    q = np.empty((M, cols), np.int16)
    scl = np.empty((M, cols // 16), np.float32)
    mnf = np.empty((M, cols // 16), np.float32)
    cdef int16_t[:, ::1] qv = q
    cdef float[:, ::1] sv = scl
    cdef float[:, ::1] mv = mnf
    cdef lv_q8w *u = <lv_q8w *>aligned_alloc(64, nb * lv_q8w_size())
    if u == NULL:
        raise MemoryError("unpack_rows: cannot allocate the unpacked row")
    try:
        for j in range(M):
            if lv_q8_unpack_row(qtype, &w[j, 0], nb, u) != 0:
                raise ValueError(f"unpack_rows: unsupported GGML type id {qtype}")
            lv_q8_export(u, nb, qtype, &qv[j, 0], &sv[j, 0], &mv[j, 0])
    finally:
        free(u)
    return q, scl, mnf
