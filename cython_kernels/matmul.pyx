# cython: language_level=3
"""y = x @ dequant(W).T + bias on GGML-quantized weights, float32 throughout.

Design (GFLOP/s: one core of the 2-core AVX-512 dev box, Q4_K 3072 x 768, whose
FMA peak is ~240 (AVX-512) / ~128 (AVX2); benchmarks/bench_kernels.py is the suite):

* Work is split over output features: tiles of ``tile`` rows of W.  A thread
  dequantizes its tile -- 96 x 768 floats = 288 KiB, resident in its L2 -- into
  a thread-local buffer with the exact row dequantizers of ``dequant.pxd``
  (AVX-512/AVX2 for Q4_K/Q6_K/F16), then multiplies it with x.  Each output element
  is computed by exactly one thread, so results do not depend on the thread count.
* Two register-blocked micro-kernels (lv_simd.h):
    - n < PANEL_MIN_N, "dot": out[i, j] = dot(x_i, w_j), 4 x-rows x 6 W-rows of
      zmm accumulators reduced along K; nothing is packed.  50-80 GFLOP/s at
      n = 4..12: at that size dequantizing the tile is a large part of the time.
    - n >= PANEL_MIN_N, "panel": x is packed once per call into transposed panels
      of 32 rows (16 when n <= 16); per k the kernel broadcasts 12 weights against
      one panel line: 24 zmm accumulators, no reductions.  ~110 GFLOP/s at n = 16,
      165-180 at n = 128..2048 (AVX2 build: 82 / 100 / 98 at n = 16 / 128 / 2048).
  Crossover measured at n ~ 14-16 (n = 16 fills a 16-row panel exactly).
* Panel-path work items are (x row block of ~1 MiB packed, W tile): all threads
  sweep one row block at a time so x is read from L3/DRAM once per tile (without
  this n = 2048 ran at ~137 instead of ~170); tiles are re-dequantized per block
  (2-4 % of the work).
* One OpenMP parallel region per call: pack x, barrier, then work items handed
  out dynamically (a thread that loses its core to another process does not hold
  up the other; on an idle machine static and dynamic measure the same).
* No BLAS: OpenBLAS sgemm on each dequantized tile from inside our OpenMP team
  needs its own thread pool pinned to one thread (process-wide state shared with
  the rest of scipy), and scipy's sgemm measured 4-30 GFLOP/s at n = 16..128 (per
  call packing + threading) and ~130 at n = 2048 single-threaded -- below these
  kernels.  K-chunking (to keep x/W slices in L1) measured no gain.
"""

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc

from dequant cimport T_F32, block_bytes, block_elems, dequant_row

cdef extern from "lv_simd.h" nogil:
    void lv_dot_tile(const float *x, Py_ssize_t ldx, int mr, const float *w, Py_ssize_t ldw,
                     int nr, Py_ssize_t K, float *out, Py_ssize_t ldo, const float *bias)
    void lv_pack_x(const float *x, Py_ssize_t ldx, Py_ssize_t rows, Py_ssize_t K, float *panel,
                   int nxp)
    void lv_bx_tile(const float *panel, int nxp, int nx, const float *w, Py_ssize_t ldw, int mw,
                    Py_ssize_t K, float *out, Py_ssize_t ldo, const float *bias)
    int lv_mr()
    int lv_nr()
    int lv_nx()
    int lv_vl()
    int lv_mw()
    const char *lv_isa()
    void lv_omp_barrier()

# n at or above which the panel kernel is used (measured crossover, see module doc)
cdef Py_ssize_t PANEL_MIN_N = 16
# bytes of packed x kept in L2 while a thread's W rows sweep over them
cdef Py_ssize_t PANEL_CHUNK_BYTES = 256 * 1024
# panel path work items cover ~BLOCK_BYTES of packed x (>= BLOCK_MIN_ROWS rows):
# all threads sweep one x block at a time, so it is read from L3/DRAM once per W
# tile instead of streaming all of x per tile; the W tile is dequantized again
# for every block (2-4 % of the work at 256+ rows).
cdef Py_ssize_t BLOCK_BYTES = 1024 * 1024
cdef Py_ssize_t BLOCK_MIN_ROWS = 256


def micro_kernel():
    """``(isa, MR, NR, NX, MW)`` of the compiled micro-kernels, e.g. ``("avx512", 4, 6, 32, 12)``.

    MR x NR: dot-kernel tile (x rows x W rows); NX x MW: panel-kernel tile.
    """
    return (lv_isa().decode(), lv_mr(), lv_nr(), lv_nx(), lv_mw())


def panel_min_n():
    """Smallest n that takes the panel kernel (below it: the dot kernel)."""
    return PANEL_MIN_N


cdef struct Job:
    const float *x          # (n, K) activations
    const float *panels     # packed x (panel path) or NULL
    const uint8_t *w        # (M, row_bytes) quantized weights
    const float *bias       # (M,) or NULL
    float *out              # (n, M)
    Py_ssize_t n, K, M, row_bytes, tile, pchunk
    Py_ssize_t ntiles       # W tiles
    Py_ssize_t pblock       # panels per row block (panel path)
    int qtype, nx, panel


@cython.boundscheck(False)
cdef void _dot_tile(const Job *j, const float *wp, Py_ssize_t r0, Py_ssize_t nrows) noexcept nogil:
    """out[:, r0:r0+nrows] = x . w_tile^T (+ bias) with the dot kernel."""
    cdef int MR = lv_mr()
    cdef int NR = lv_nr()
    cdef Py_ssize_t i0 = 0, c0
    cdef int mr, nr
    while i0 < j.n:
        mr = <int>(j.n - i0) if j.n - i0 < MR else MR
        c0 = 0
        while c0 < nrows:
            nr = <int>(nrows - c0) if nrows - c0 < NR else NR
            lv_dot_tile(j.x + i0 * j.K, j.K, mr, wp + c0 * j.K, j.K, nr, j.K,
                        j.out + i0 * j.M + r0 + c0, j.M,
                        (j.bias + r0 + c0) if j.bias != NULL else NULL)
            c0 += nr
        i0 += mr


@cython.boundscheck(False)
cdef void _panel_tile(const Job *j, const float *wp, Py_ssize_t r0, Py_ssize_t nrows,
                      Py_ssize_t p0, Py_ssize_t npan) noexcept nogil:
    """out[rows of panels p0..npan-1, r0:r0+nrows] = x . w_tile^T (+ bias), panel kernel."""
    cdef int MW = lv_mw()
    cdef int NX = j.nx
    cdef Py_ssize_t p, pend, c0
    cdef int mw, nx
    while p0 < npan:            # a chunk of panels stays in L2 while all tile rows pass
        pend = p0 + j.pchunk
        if pend > npan:
            pend = npan
        c0 = 0
        while c0 < nrows:
            mw = <int>(nrows - c0) if nrows - c0 < MW else MW
            for p in range(p0, pend):
                nx = <int>(j.n - p * NX) if j.n - p * NX < NX else NX
                lv_bx_tile(j.panels + p * j.K * NX, NX, nx, wp + c0 * j.K, j.K, mw, j.K,
                           j.out + p * NX * j.M + r0 + c0, j.M,
                           (j.bias + r0 + c0) if j.bias != NULL else NULL)
            c0 += mw
        p0 = pend


cdef int _run_item(const Job *j, Py_ssize_t item, float *buf) noexcept nogil:
    """Work item = (row block, W tile): dequantize the tile into ``buf`` (F32: read in
    place) and multiply it with the row block of x."""
    cdef Py_ssize_t t = item % j.ntiles
    cdef Py_ssize_t rb = item // j.ntiles
    cdef Py_ssize_t npan = (j.n + j.nx - 1) // j.nx
    cdef Py_ssize_t r0 = t * j.tile
    cdef Py_ssize_t nrows = j.M - r0
    cdef Py_ssize_t r
    cdef const float *wp
    if nrows > j.tile:
        nrows = j.tile
    if j.qtype == T_F32:
        wp = <const float *>(j.w + r0 * j.row_bytes)
    elif buf == NULL:
        return -1
    else:
        for r in range(nrows):
            dequant_row(j.qtype, j.w + (r0 + r) * j.row_bytes, buf + r * j.K, j.K)
        wp = buf
    if j.panel:
        _panel_tile(j, wp, r0, nrows, rb * j.pblock, min(npan, (rb + 1) * j.pblock))
    else:
        _dot_tile(j, wp, r0, nrows)
    return 0


def matmul_q(const float[:, ::1] x, int qtype, const uint8_t[:, ::1] w, Py_ssize_t cols,
             const float[::1] bias, float[:, ::1] out, int nthreads=1, int path=0,
             Py_ssize_t tile=0, Py_ssize_t chunk_bytes=0, Py_ssize_t block_rows=0):
    """out (n, M) = x (n, K) @ dequant(w (M, row_bytes), K).T + bias (M,) or None.

    ``path``: 0 auto (panel kernel when n >= panel_min_n()), 1 dot kernel, 2 panel
    kernel.  Tuning knobs (0 = default): ``tile`` W rows per thread tile,
    ``chunk_bytes`` packed-x bytes per L2 chunk, ``block_rows`` x rows per work
    item of the panel path.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t K = x.shape[1]
    cdef Py_ssize_t M = w.shape[0]
    cdef int be = block_elems(qtype)
    if be == 0:
        raise ValueError(f"unsupported GGML type id {qtype}")
    if cols != K or K <= 0 or K % be:
        raise ValueError(f"x has {K} columns, weight has {cols} (block size {be})")
    cdef Py_ssize_t row_bytes = K // be * block_bytes(qtype)
    if w.shape[1] != row_bytes:
        raise ValueError(f"weight rows have {w.shape[1]} bytes, expected {row_bytes}")
    if out.shape[0] != n or out.shape[1] != M:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {M})")
    if bias is not None and bias.shape[0] != M:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {M}")
    if path not in (0, 1, 2):
        raise ValueError(f"path must be 0, 1 or 2, got {path}")
    if n == 0 or M == 0:
        return
    nthreads = max(nthreads, 1)

    cdef Job job
    job.x = &x[0, 0]
    job.w = &w[0, 0]
    job.out = &out[0, 0]
    job.bias = &bias[0] if bias is not None else NULL
    job.panels = NULL
    job.n, job.K, job.M, job.row_bytes, job.qtype = n, K, M, row_bytes, qtype
    job.panel = (n >= PANEL_MIN_N) if path == 0 else (path == 2)
    job.tile = tile if tile > 0 else (lv_mw() * 8 if job.panel else lv_nr() * 8)
    # panel width: one vector of x rows when n fits in it, else two
    job.nx = lv_vl() if n <= lv_vl() else lv_nx()
    if chunk_bytes <= 0:
        chunk_bytes = PANEL_CHUNK_BYTES
    job.pchunk = max(1, chunk_bytes // (K * job.nx * <Py_ssize_t>sizeof(float)))
    if block_rows <= 0:
        block_rows = max(BLOCK_MIN_ROWS, BLOCK_BYTES // (K * <Py_ssize_t>sizeof(float)))
    job.pblock = max(1, block_rows // job.nx)

    cdef Py_ssize_t ntiles = (M + job.tile - 1) // job.tile
    cdef Py_ssize_t npan = (n + job.nx - 1) // job.nx
    cdef Py_ssize_t nitems = ntiles * ((npan + job.pblock - 1) // job.pblock if job.panel else 1)
    job.ntiles = ntiles
    cdef Py_ssize_t t, p
    cdef float *buf = NULL
    cdef float *panels = NULL
    cdef int failed = 0
    cdef bint need_buf = qtype != T_F32

    if job.panel:
        panels = <float *>malloc(npan * job.nx * K * sizeof(float))
        if panels == NULL:
            raise MemoryError("matmul: cannot allocate the packed activations")
        job.panels = panels

    # One parallel region per call (each fork/join or barrier costs a wake-up):
    # pack x (panel path), then the W tiles.  Tiles are handed out dynamically so a
    # thread that loses its core to another process does not hold up the other.
    with nogil, parallel(num_threads=nthreads):
        buf = <float *>malloc(job.tile * K * sizeof(float)) if need_buf else NULL
        if job.panel:
            for p in prange(npan, schedule="static"):
                lv_pack_x(job.x + p * job.nx * K, K, min(job.nx, n - p * job.nx), K,
                          panels + p * job.nx * K, job.nx)
            lv_omp_barrier()    # every panel is packed before any tile reads them
        for t in prange(nitems, schedule="dynamic"):
            if _run_item(&job, t, buf) != 0:
                failed += 1
        free(buf)
    free(panels)
    if failed:
        raise MemoryError("matmul: cannot allocate the dequantization tile")
