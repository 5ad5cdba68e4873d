# cython: language_level=3
"""Bidirectional multi-head attention and mean pooling over an *unpadded* batch.

The rows of all sequences are stacked, ``offsets`` (B+1,) delimits them: sequence
``s`` owns rows ``offsets[s]:offsets[s+1]``.  ``lodevec.kernels`` validates every
argument; the def functions re-check what they index with before releasing the GIL.

attention: one work item per (sequence, head), longest sequences first, handed out
dynamically to the OpenMP team (no BLAS anywhere: OpenBLAS's own spinning thread
pool fought with our team for the cores).  Per item, in thread-local scratch:

* pack Q_h (n, d) -- rotary embedding applied, times 1/sqrt(d) --, K_h^T in panels
  of ``nkp`` keys (``panel[c * nkp + j] = K_h[p * nkp + j, c]``, zero past n) and
  V_h in column panels of ``nvp`` (``vpanel[t * nvp + i] = V_h[t, c0 + i]``);
* for each block of ``mb`` query rows (``mb * n`` scores, ~SCORE_BYTES: an 8192-token
  sequence never needs an n x n matrix): scores = Q_blk . K_h^T with the matmul
  panel micro-kernel (lv_ab_tile), row softmax (max, exp, sum in double), and
  ctx = P . V_h with the same micro-kernel, scaled by 1/sum on the way out.

Every output element is computed by one thread in a fixed order, so results do
not depend on the thread count.
"""

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

import numpy as np

cdef extern from "lv_simd.h" nogil:
    void lv_ab_tile(const float *a, Py_ssize_t lda, int mr, const float *b, int nxp,
                    Py_ssize_t K, float *c, Py_ssize_t ldc, int nc, const float *rscale)
    void lv_rope_row(const float *x, const float *cs, const float *sn, Py_ssize_t half,
                     float scale, float *y)
    void lv_mean_rows_cols(const float *x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t nc,
                           float *out)
    float lv_max(const float *x, Py_ssize_t n)
    double lv_exp_sub_sum(float *x, Py_ssize_t n, float sub)
    int lv_mw()
    int lv_nx()
    int lv_vl()

# bytes of scores per query block and thread (kept in L2 between QK^T and PV)
cdef Py_ssize_t SCORE_BYTES = 256 * 1024


cdef struct AttnJob:
    const float *q
    const float *k
    const float *v
    const float *cs         # (N, d/2) cos per token, or NULL (no rotary embedding)
    const float *sn
    float *out
    const int64_t *offsets
    const int64_t *order    # sequences, longest first
    Py_ssize_t ldq, ldk, ldv, ldo
    Py_ssize_t nmax         # longest sequence
    Py_ssize_t mb           # query rows per block
    int nh, d, nkp, nvp, ncv, mw
    float scale


cdef struct Scratch:
    float *qs       # (nmax, d)
    float *kt       # ceil(nmax / nkp) panels of (d, nkp)
    float *vp       # ncv panels of (nmax, nvp)
    float *s        # (mb, lds) scores
    float *inv      # (mb,) 1 / row sums
    float *row      # (d,) one roped key row


cdef inline Py_ssize_t _lds(const AttnJob *j) noexcept nogil:
    return (j.nmax + j.nkp - 1) // j.nkp * j.nkp


cdef Scratch *_scratch_new(const AttnJob *j) noexcept nogil:
    """One thread's scratch, or NULL when out of memory."""
    cdef Py_ssize_t lds = _lds(j)
    cdef Scratch *w = <Scratch *>malloc(sizeof(Scratch))
    if w == NULL:
        return NULL
    w.qs = <float *>malloc(j.nmax * j.d * sizeof(float))
    w.kt = <float *>malloc(lds * j.d * sizeof(float))
    w.vp = <float *>malloc(j.ncv * j.nmax * j.nvp * sizeof(float))
    w.s = <float *>malloc(j.mb * lds * sizeof(float))
    w.inv = <float *>malloc(j.mb * sizeof(float))
    w.row = <float *>malloc(j.d * sizeof(float))
    if w.qs == NULL or w.kt == NULL or w.vp == NULL or w.s == NULL or w.inv == NULL \
            or w.row == NULL:
        _scratch_del(w)
        return NULL
    return w


cdef void _scratch_del(Scratch *w) noexcept nogil:
    if w == NULL:
        return
    free(w.qs)
    free(w.kt)
    free(w.vp)
    free(w.s)
    free(w.inv)
    free(w.row)
    free(w)


@cython.boundscheck(False)
cdef void _pack(const AttnJob *j, Scratch *w, Py_ssize_t t0, Py_ssize_t n, int h) noexcept nogil:
    """Q_h (roped, scaled), K_h^T panels (roped), V_h column panels of one sequence."""
    cdef int d = j.d, half = j.d // 2, nkp = j.nkp, nvp = j.nvp
    cdef Py_ssize_t t, c, i, col, lds = (n + nkp - 1) // nkp * nkp
    cdef const float *qr
    cdef const float *kr
    cdef const float *vr
    cdef const float *krow
    cdef float *kp
    cdef float *vdst
    for t in range(n):
        qr = j.q + (t0 + t) * j.ldq + h * d
        kr = j.k + (t0 + t) * j.ldk + h * d
        vr = j.v + (t0 + t) * j.ldv + h * d
        if j.cs != NULL:
            lv_rope_row(qr, j.cs + (t0 + t) * half, j.sn + (t0 + t) * half, half, j.scale,
                        w.qs + t * d)
            lv_rope_row(kr, j.cs + (t0 + t) * half, j.sn + (t0 + t) * half, half, 1.0, w.row)
            krow = w.row
        else:
            for c in range(d):
                w.qs[t * d + c] = qr[c] * j.scale
            krow = kr
        kp = w.kt + (t // nkp) * d * nkp + (t % nkp)
        for c in range(d):
            kp[c * nkp] = krow[c]
        for c in range(j.ncv):
            vdst = w.vp + c * n * nvp + t * nvp
            for i in range(nvp):
                col = c * nvp + i
                vdst[i] = vr[col] if col < d else 0.0
    # padded keys of the last panel: zeros (their scores are computed, never used)
    for t in range(n, lds):
        kp = w.kt + (t // nkp) * d * nkp + (t % nkp)
        for c in range(d):
            kp[c * nkp] = 0.0


@cython.boundscheck(False)
cdef void _attend(const AttnJob *j, Scratch *w, Py_ssize_t item) noexcept nogil:
    """ctx of one (sequence, head) work item, written to out."""
    cdef Py_ssize_t seq = j.order[item // j.nh]
    cdef int h = <int>(item % j.nh)
    cdef Py_ssize_t t0 = j.offsets[seq]
    cdef Py_ssize_t n = j.offsets[seq + 1] - t0
    cdef int d = j.d, nkp = j.nkp, nvp = j.nvp, mw = j.mw, mr, nc
    cdef Py_ssize_t npk, lds, i0, m, r0, p, r, c
    cdef float mx
    if n <= 0:
        return
    _pack(j, w, t0, n, h)
    npk = (n + nkp - 1) // nkp
    lds = npk * nkp
    i0 = 0
    while i0 < n:
        m = n - i0 if n - i0 < j.mb else j.mb
        # scores (m, n) = Q_blk . K^T
        r0 = 0
        while r0 < m:
            mr = <int>(m - r0) if m - r0 < mw else mw
            for p in range(npk):
                lv_ab_tile(w.qs + (i0 + r0) * d, d, mr, w.kt + p * d * nkp, nkp, d,
                           w.s + r0 * lds + p * nkp, lds, nkp, NULL)
            r0 += mr
        # softmax numerators in place; 1 / sum applied to ctx
        for r in range(m):
            mx = lv_max(w.s + r * lds, n)
            w.inv[r] = <float>(1.0 / lv_exp_sub_sum(w.s + r * lds, n, mx))
        # ctx (m, d) = P . V, one V column panel at a time
        r0 = 0
        while r0 < m:
            mr = <int>(m - r0) if m - r0 < mw else mw
            for c in range(j.ncv):
                nc = d - <int>c * nvp
                if nc > nvp:
                    nc = nvp
                lv_ab_tile(w.s + r0 * lds, lds, mr, w.vp + c * n * nvp, nvp, n,
                           j.out + (t0 + i0 + r0) * j.ldo + h * d + c * nvp, j.ldo, nc,
                           w.inv + r0)
            r0 += mr
        i0 += m


cdef Py_ssize_t _row_stride(const float[:, :] a, str name) except -1:
    cdef Py_ssize_t f = sizeof(float)  # signed, like strides and shapes
    if a.shape[0] > 0 and a.strides[1] != f:
        raise ValueError(f"{name}: columns must be contiguous")
    if a.strides[0] % f or (a.shape[0] > 1 and a.strides[0] < a.shape[1] * f):
        raise ValueError(f"{name}: rows overlap or are misaligned")
    return a.strides[0] // f


@cython.boundscheck(False)
def attention(const float[:, :] q, const float[:, :] k, const float[:, :] v,
              const int64_t[::1] offsets, int n_heads, const float[:, ::1] cos,
              const float[:, ::1] sin, float[:, :] out, int nthreads=1):
    """out (N, H) = softmax(rope(Q) rope(K)^T / sqrt(d)) V per sequence and head.

    q/k/v/out: (N, H) float32 with contiguous columns (row strides may be larger,
    e.g. column slices of the fused QKV matrix).  offsets: (B+1,) int64, 0 ... N,
    non-decreasing.  cos/sin: (N, d/2) per-token rotary tables, or both None.
    """
    cdef Py_ssize_t N = q.shape[0], H = q.shape[1], B = offsets.shape[0] - 1, s, i
    if n_heads < 1 or H % n_heads:
        raise ValueError(f"{H} columns are not a whole number of {n_heads} heads")
    cdef int d = <int>(H // n_heads)
    if k.shape[0] != N or k.shape[1] != H or v.shape[0] != N or v.shape[1] != H \
            or out.shape[0] != N or out.shape[1] != H:
        raise ValueError(f"q, k, v and out must all have shape ({N}, {H})")
    if B < 0 or offsets[0] != 0 or offsets[B] != N:
        raise ValueError(f"offsets must run from 0 to {N}")
    for s in range(B):
        if offsets[s + 1] < offsets[s]:
            raise ValueError("offsets must be non-decreasing")
    if (cos is None) != (sin is None):
        raise ValueError("cos and sin go together")
    if cos is not None:
        if d % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {d}")
        if cos.shape[0] != N or cos.shape[1] != d // 2 or sin.shape[0] != N \
                or sin.shape[1] != d // 2:
            raise ValueError(f"cos/sin must have shape ({N}, {d // 2})")
    if N == 0 or H == 0 or B == 0:
        return
    cdef Py_ssize_t ldq = _row_stride(q, "q"), ldk = _row_stride(k, "k")
    cdef Py_ssize_t ldv = _row_stride(v, "v"), ldo = _row_stride(out, "out")
    lengths = np.diff(np.asarray(offsets))
    cdef int64_t[::1] order = np.ascontiguousarray(np.argsort(-lengths, kind="stable"),
                                                   dtype=np.int64)

    cdef AttnJob job
    job.q, job.k, job.v, job.out = &q[0, 0], &k[0, 0], &v[0, 0], &out[0, 0]
    job.cs = &cos[0, 0] if cos is not None else NULL
    job.sn = &sin[0, 0] if sin is not None else NULL
    job.offsets, job.order = &offsets[0], &order[0]
    job.ldq, job.ldk, job.ldv, job.ldo = ldq, ldk, ldv, ldo
    job.nh, job.d, job.mw = n_heads, d, lv_mw()
    job.scale = <float>(1.0 / (<double>d) ** 0.5)
    job.nmax = int(lengths.max())
    # key panels of one vector when every sequence fits in it (short queries)
    job.nkp = lv_vl() if job.nmax <= lv_vl() else lv_nx()
    job.nvp = lv_vl() if d <= lv_vl() else lv_nx()
    job.ncv = (d + job.nvp - 1) // job.nvp
    cdef Py_ssize_t lds = _lds(&job)
    job.mb = SCORE_BYTES // (lds * <Py_ssize_t>sizeof(float)) // job.mw * job.mw
    if job.mb < job.mw:
        job.mb = job.mw
    if job.mb > job.nmax:
        job.mb = job.nmax
    cdef Py_ssize_t nitems = B * n_heads
    cdef int failed = 0
    cdef Scratch *ws = NULL
    nthreads = max(1, min(nthreads, nitems))
    with nogil, parallel(num_threads=nthreads):
        ws = _scratch_new(&job)     # assigned in the block: thread-private
        for i in prange(nitems, schedule="dynamic"):
            if ws == NULL:
                failed += 1
            else:
                _attend(&job, ws, i)
        _scratch_del(ws)
    if failed:
        raise MemoryError("attention: cannot allocate the per-thread scratch")


@cython.boundscheck(False)
def segment_mean(const float[:, ::1] x, const int64_t[::1] offsets, float[:, ::1] out,
                 int nthreads=1):
    """out (B, D) = mean of the rows offsets[b]:offsets[b+1] of x (N, D), summed in
    double; an empty segment gives zeros."""
    cdef Py_ssize_t N = x.shape[0], D = x.shape[1], B = offsets.shape[0] - 1, s, c, j0
    if B < 0 or offsets[0] != 0 or offsets[B] != N:
        raise ValueError(f"offsets must run from 0 to {N}")
    for s in range(B):
        if offsets[s + 1] < offsets[s]:
            raise ValueError("offsets must be non-decreasing")
    if out.shape[0] != B or out.shape[1] != D:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({B}, {D})")
    if B == 0 or D == 0:
        return
    cdef const float *xp = &x[0, 0] if N > 0 else NULL
    cdef float *op = &out[0, 0]
    cdef const int64_t *off = &offsets[0]
    cdef Py_ssize_t nchunks = (D + 255) // 256
    cdef int nt = nthreads if N * D >= 65536 else 1
    with nogil:
        for c in prange(B * nchunks, num_threads=max(1, nt), schedule="static"):
            s = c // nchunks
            j0 = (c % nchunks) * 256
            lv_mean_rows_cols(xp + off[s] * D + j0 if xp != NULL else NULL, D,
                              off[s + 1] - off[s], min(256, D - j0), op + s * D + j0)
