# cython: language_level=3
"""Row-wise and element-wise float32 ops of the encoder: layer norm (plain and fused
with the residual add), GELU (erf), SwiGLU, L2 normalisation.

Row reductions (mean, variance, norms) sum in 16 float lanes combined in double,
pooled sums in double, so results match a float64 numpy reference to float32
rounding.  exp / erf are vectorizable polynomial versions (lv_simd.h).  ``lodevec.kernels`` validates shapes/dtypes; the
def functions re-check the sizes they index with before releasing the GIL.
"""

cimport cython
from cython.parallel cimport prange
from libc.math cimport sqrt

cdef extern from "lv_simd.h" nogil:
    int lv_openmp_enabled()
    int lv_omp_max_threads()
    # vectorizable element-wise math, see lv_simd.h for the approximations
    void lv_swiglu(const float *g, float *u, Py_ssize_t n)
    void lv_gelu_inplace(float *x, Py_ssize_t n)
    double lv_sum(const float *x, Py_ssize_t n)
    double lv_sum_sq_dev(const float *x, Py_ssize_t n, float c)

# elements per parallel chunk of the element-wise ops (small inputs stay serial)
cdef Py_ssize_t CHUNK = 16384


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(lv_openmp_enabled())


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return lv_omp_max_threads()


cdef inline int _threads(int nthreads, Py_ssize_t work, Py_ssize_t grain) noexcept nogil:
    """Use one thread for tiny inputs: waking the team costs more than the work."""
    if work < grain:
        return 1
    return nthreads if nthreads > 1 else 1


cdef void _ln_row(const float *x, float *y, Py_ssize_t D, const float *w, const float *b,
                  float eps) noexcept nogil:
    """y = (x - mean) / sqrt(var + eps) * w + b, var the biased variance (torch)."""
    cdef Py_ssize_t j
    cdef double mean = lv_sum(x, D) / D
    # second pass around the float mean: no cancellation, as torch's two-pass/Welford
    cdef double v = lv_sum_sq_dev(x, D, <float>mean)
    cdef float fmean = <float>mean
    cdef float rstd = <float>(1.0 / sqrt(v / D + eps))
    if w != NULL and b != NULL:
        for j in range(D):
            y[j] = (x[j] - fmean) * rstd * w[j] + b[j]
    elif w != NULL:
        for j in range(D):
            y[j] = (x[j] - fmean) * rstd * w[j]
    else:
        for j in range(D):
            y[j] = (x[j] - fmean) * rstd


cdef int _check_affine(Py_ssize_t D, const float[::1] weight, const float[::1] bias) except -1:
    if weight is not None and weight.shape[0] != D:
        raise ValueError(f"weight has {weight.shape[0]} elements, expected {D}")
    if bias is not None and bias.shape[0] != D:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected {D}")
    if bias is not None and weight is None:
        raise ValueError("bias without weight is not supported")
    return 0


@cython.boundscheck(False)
def layer_norm(const float[:, ::1] x, const float[::1] weight, const float[::1] bias, float eps,
               float[:, ::1] out, int nthreads=1):
    """out (n, D) = LN(x (n, D)) * weight + bias; weight/bias may be None; out may be x."""
    cdef Py_ssize_t n = x.shape[0], D = x.shape[1], i
    if out.shape[0] != n or out.shape[1] != D:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {D})")
    _check_affine(D, weight, bias)
    if n == 0 or D == 0:
        return
    cdef const float *xp = &x[0, 0]
    cdef float *op = &out[0, 0]
    cdef const float *wp = &weight[0] if weight is not None else NULL
    cdef const float *bp = &bias[0] if bias is not None else NULL
    cdef int nt = _threads(nthreads, n * D, CHUNK)
    with nogil:
        for i in prange(n, num_threads=nt, schedule="static"):
            _ln_row(xp + i * D, op + i * D, D, wp, bp, eps)


@cython.boundscheck(False)
def add_layer_norm(float[:, ::1] x, const float[:, ::1] residual, const float[::1] weight,
                   const float[::1] bias, float eps, int nthreads=1):
    """x (n, D) = LN(x + residual) * weight + bias, in place (the residual block's tail)."""
    cdef Py_ssize_t n = x.shape[0], D = x.shape[1], i, j
    if residual.shape[0] != n or residual.shape[1] != D:
        raise ValueError(f"residual has shape ({residual.shape[0]}, {residual.shape[1]}), "
                         f"expected ({n}, {D})")
    _check_affine(D, weight, bias)
    if n == 0 or D == 0:
        return
    cdef float *xp = &x[0, 0]
    cdef const float *rp = &residual[0, 0]
    cdef const float *wp = &weight[0] if weight is not None else NULL
    cdef const float *bp = &bias[0] if bias is not None else NULL
    cdef int nt = _threads(nthreads, n * D, CHUNK)
    with nogil:
        for i in prange(n, num_threads=nt, schedule="static"):
            for j in range(D):
                xp[i * D + j] = xp[i * D + j] + rp[i * D + j]
            _ln_row(xp + i * D, xp + i * D, D, wp, bp, eps)


@cython.boundscheck(False)
def gelu(float[::1] x, int nthreads=1):
    """In place: x = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU, as BERT uses).

    Evaluated as x * erfc(-x / sqrt 2) / 2 with a vectorizable erfc (relative error
    ~1e-7, see lv_simd.h), not the tanh approximation.
    """
    cdef Py_ssize_t n = x.shape[0], c, j, lo, hi
    if n == 0:
        return
    cdef float *p = &x[0]
    cdef Py_ssize_t nchunks = (n + CHUNK - 1) // CHUNK
    with nogil:
        for c in prange(nchunks, num_threads=_threads(nthreads, n, 2 * CHUNK), schedule="static"):
            lo = c * CHUNK
            hi = min(lo + CHUNK, n)
            lv_gelu_inplace(p + lo, hi - lo)


@cython.boundscheck(False)
def swiglu(const float[::1] gate, float[::1] up, int nthreads=1):
    """In place on ``up``: up = up * silu(gate), silu(g) = g / (1 + exp(-g))."""
    cdef Py_ssize_t n = up.shape[0], c, j, lo, hi
    if gate.shape[0] != n:
        raise ValueError(f"gate has {gate.shape[0]} elements, up has {n}")
    if n == 0:
        return
    cdef const float *g = &gate[0]
    cdef float *u = &up[0]
    cdef Py_ssize_t nchunks = (n + CHUNK - 1) // CHUNK
    with nogil:
        for c in prange(nchunks, num_threads=_threads(nthreads, n, 2 * CHUNK), schedule="static"):
            lo = c * CHUNK
            hi = min(lo + CHUNK, n)
            lv_swiglu(g + lo, u + lo, hi - lo)


@cython.boundscheck(False)
def l2_normalize(const float[:, ::1] x, float[:, ::1] out, int nthreads=1):
    """out (n, D) = x / ||x||_2 per row; a zero row stays zero.  out may be x."""
    cdef Py_ssize_t n = x.shape[0], D = x.shape[1], i, j
    if out.shape[0] != n or out.shape[1] != D:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {D})")
    if n == 0 or D == 0:
        return
    cdef const float *xp = &x[0, 0]
    cdef float *op = &out[0, 0]
    cdef double ss
    cdef float inv
    with nogil:
        for i in prange(n, num_threads=_threads(nthreads, n * D, CHUNK), schedule="static"):
            ss = lv_sum_sq_dev(xp + i * D, D, 0.0)
            inv = <float>(1.0 / sqrt(ss)) if ss > 0.0 else 0.0
            for j in range(D):
                op[i * D + j] = xp[i * D + j] * inv
