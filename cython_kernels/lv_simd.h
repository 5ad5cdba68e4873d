/*
 * lv_simd.h - C helpers for lodevec's Cython kernels (static inline, no state).
 *
 *   lv_f16_to_f32, lv_f16_row   exact IEEE half -> single (F16C when compiled in)
 *   lv_dq_q4_K/q6_K_simd        vector block dequantizers (bit-identical to scalar)
 *   lv_expf, lv_gelu, ...       vectorizable element-wise math and row reductions
 *   lv_dot_tile                 matmul "dot" micro-kernel: out[i, j] = dot(x_i, w_j)
 *   lv_pack_x, lv_bx_tile       matmul "panel" micro-kernel on transposed x panels
 *   lv_openmp_enabled           1 when the module was compiled with OpenMP
 *
 * Each micro-kernel exists for AVX-512F, AVX2+FMA and plain C, chosen at compile
 * time; setup.py compiles every module once per ISA level (lodevec._kernels.<level>)
 * and lodevec.kernels imports the level the CPU supports.  lv_isa() reports which
 * micro-kernels a module was built with.
 */
#ifndef LV_SIMD_H
#define LV_SIMD_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>
#if defined(__AVX2__) || defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------ vector abstraction
 * lv_vec = one SIMD register of floats (LV_VL lanes) for the compiled ISA;
 * LV_SIMD is 0 for the plain-C build (LV_VL then only sizes the scalar tiles). */
#if defined(__AVX512F__)
#define LV_SIMD 1
#define LV_VL 16
#define LV_MW 12
typedef __m512 lv_vec;
#define LV_ZERO() _mm512_setzero_ps()
#define LV_SET1(a) _mm512_set1_ps(a)
#define LV_LOAD(p) _mm512_loadu_ps(p)
#define LV_STORE(p, v) _mm512_storeu_ps((p), (v))
#define LV_BCAST(p) _mm512_set1_ps(*(p))
#define LV_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define LV_FNMA(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define LV_ADD(a, b) _mm512_add_ps((a), (b))
#define LV_SUB(a, b) _mm512_sub_ps((a), (b))
#define LV_MUL(a, b) _mm512_mul_ps((a), (b))
#define LV_DIV(a, b) _mm512_div_ps((a), (b))
#define LV_MIN(a, b) _mm512_min_ps((a), (b))
#define LV_MAX(a, b) _mm512_max_ps((a), (b))
#define LV_ABS(a) _mm512_abs_ps(a)
/* a where x >= y, else b */
#define LV_SEL_GE(x, y, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((x), (y), _CMP_GE_OQ), (b), (a))
static inline lv_vec lv_pow2n(lv_vec t, lv_vec magic) {  /* 2^n, n = bits(t) - bits(magic) */
    __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
}
static inline double lv_vsum(lv_vec v) { return (double)_mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#define LV_SIMD 1
#define LV_VL 8
#define LV_MW 6
typedef __m256 lv_vec;
#define LV_ZERO() _mm256_setzero_ps()
#define LV_SET1(a) _mm256_set1_ps(a)
#define LV_LOAD(p) _mm256_loadu_ps(p)
#define LV_STORE(p, v) _mm256_storeu_ps((p), (v))
#define LV_BCAST(p) _mm256_broadcast_ss(p)
#define LV_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define LV_FNMA(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define LV_ADD(a, b) _mm256_add_ps((a), (b))
#define LV_SUB(a, b) _mm256_sub_ps((a), (b))
#define LV_MUL(a, b) _mm256_mul_ps((a), (b))
#define LV_DIV(a, b) _mm256_div_ps((a), (b))
#define LV_MIN(a, b) _mm256_min_ps((a), (b))
#define LV_MAX(a, b) _mm256_max_ps((a), (b))
#define LV_ABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (a))
#define LV_SEL_GE(x, y, a, b) _mm256_blendv_ps((b), (a), _mm256_cmp_ps((x), (y), _CMP_GE_OQ))
static inline lv_vec lv_pow2n(lv_vec t, lv_vec magic) {
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}
static inline double lv_vsum(lv_vec v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return (double)_mm_cvtss_f32(b);
}
#else
#define LV_SIMD 0
#define LV_VL 4
#endif

/* ------------------------------------------------------------------ OpenMP */
static inline int lv_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline int lv_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Barrier for all threads of the enclosing parallel region (an orphaned directive,
 * legal in a function called from one).  Cython has no barrier statement, and its
 * prange inside a `parallel` block is an `omp for nowait`. */
static inline void lv_omp_barrier(void) {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

/* --------------------------------------------------------------- f16 -> f32 */
/* IEEE binary16: s eeeee mmmmmmmmmm.  Every half is exactly representable as a
 * float, so the conversion is exact (this is what numpy's astype does). */
static inline float lv_f16_to_f32(uint16_t h) {
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1Fu) {                 /* inf / nan */
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {              /* normal */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {              /* +-0 */
        bits = sign;
    } else {                            /* subnormal: renormalise */
        int e = -1;
        do { e++; man <<= 1; } while ((man & 0x400u) == 0);
        man &= 0x3FFu;
        bits = sign | ((uint32_t)(112 - e) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

/* Read a little-endian f16 at an arbitrary (possibly unaligned) address. */
static inline float lv_load_f16(const uint8_t *p) {
    return lv_f16_to_f32((uint16_t)(p[0] | ((uint16_t)p[1] << 8)));
}

static inline uint32_t lv_load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ------------------------------------------------- element-wise math (ops)
 * Branch-free scalar code that gcc -O3 vectorizes (no libm calls in the loops).
 *
 * lv_expf: Cephes-style exp: x = n ln2 + r (n by the 1.5*2^23 rounding trick, ln2
 * split in two constants), e^r by a degree-6 polynomial, times 2^n built in the
 * exponent bits.  Max relative error ~2 ulp on [-87.3, 88.3]; 0 below (where exp
 * underflows to subnormals anyway), clamped to e^88.3 above. */
static inline float lv_expf(float x) {
    const float hi = 88.3f, lo = -87.3f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float t = xc * 1.44269504088896341f + magic;
    float n = t - magic;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    int32_t ni = ti - 0x4B400000; /* the integer n */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = (ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    return x < lo ? 0.0f : y;
}

/* silu(g) = g * sigmoid(g) = g / (1 + e^-g) */
static inline float lv_silu(float g) { return g / (1.0f + lv_expf(-g)); }

/* Exact-form GELU, x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2.  erfc(z), z >= 0,
 * by the Chebyshev fit of Numerical Recipes (erfcc: fractional error < 1.2e-7
 * everywhere), so Phi is relative-accurate in both tails; x >= 0 uses
 * Phi = 1 - erfc(z)/2. */
static inline float lv_gelu(float x) {
    float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float q = 0.17087277f;
    q = q * t - 0.82215223f;
    q = q * t + 1.48851587f;
    q = q * t - 1.13520398f;
    q = q * t + 0.27886807f;
    q = q * t - 0.18628806f;
    q = q * t + 0.09678418f;
    q = q * t + 0.37409196f;
    q = q * t + 1.00002368f;
    q = q * t - 1.26551223f;
    float erfc = t * lv_expf(q - z * z);
    float phi = x >= 0.0f ? 1.0f - 0.5f * erfc : 0.5f * erfc;
    return x * phi;
}

#if LV_SIMD
/* Vector twins of lv_expf / lv_gelu: the same algorithm lane-wise. */
static inline lv_vec lv_vexp(lv_vec x) {
    const lv_vec lo = LV_SET1(-87.3f), magic = LV_SET1(12582912.0f);
    lv_vec xc = LV_MIN(LV_MAX(x, lo), LV_SET1(88.3f));
    lv_vec t = LV_FMA(xc, LV_SET1(1.44269504088896341f), magic);
    lv_vec n = LV_SUB(t, magic);
    lv_vec r = LV_FNMA(n, LV_SET1(0.693359375f), xc);
    r = LV_FNMA(n, LV_SET1(-2.12194440e-4f), r);
    lv_vec p = LV_SET1(1.9875691500e-4f);
    p = LV_FMA(p, r, LV_SET1(1.3981999507e-3f));
    p = LV_FMA(p, r, LV_SET1(8.3334519073e-3f));
    p = LV_FMA(p, r, LV_SET1(4.1665795894e-2f));
    p = LV_FMA(p, r, LV_SET1(1.6666665459e-1f));
    p = LV_FMA(p, r, LV_SET1(5.0000001201e-1f));
    p = LV_ADD(LV_FMA(p, LV_MUL(r, r), r), LV_SET1(1.0f));
    lv_vec y = LV_MUL(p, lv_pow2n(t, magic));
    return LV_SEL_GE(x, lo, y, LV_ZERO());
}

static inline lv_vec lv_vgelu(lv_vec x) {
    lv_vec z = LV_MUL(LV_ABS(x), LV_SET1(0.70710678118654752f));
    lv_vec t = LV_DIV(LV_SET1(1.0f), LV_FMA(LV_SET1(0.5f), z, LV_SET1(1.0f)));
    lv_vec q = LV_SET1(0.17087277f);
    q = LV_FMA(q, t, LV_SET1(-0.82215223f));
    q = LV_FMA(q, t, LV_SET1(1.48851587f));
    q = LV_FMA(q, t, LV_SET1(-1.13520398f));
    q = LV_FMA(q, t, LV_SET1(0.27886807f));
    q = LV_FMA(q, t, LV_SET1(-0.18628806f));
    q = LV_FMA(q, t, LV_SET1(0.09678418f));
    q = LV_FMA(q, t, LV_SET1(0.37409196f));
    q = LV_FMA(q, t, LV_SET1(1.00002368f));
    q = LV_FMA(q, t, LV_SET1(-1.26551223f));
    lv_vec half_erfc = LV_MUL(LV_SET1(0.5f), LV_MUL(t, lv_vexp(LV_FNMA(z, z, q))));
    lv_vec phi = LV_SEL_GE(x, LV_ZERO(), LV_SUB(LV_SET1(1.0f), half_erfc), half_erfc);
    return LV_MUL(x, phi);
}
#endif

static inline void lv_swiglu(const float *restrict g, float *restrict u, ptrdiff_t n) {
    ptrdiff_t j = 0;
#if LV_SIMD
    for (; j + LV_VL <= n; j += LV_VL) {
        lv_vec gv = LV_LOAD(g + j);
        lv_vec e = lv_vexp(LV_SUB(LV_ZERO(), gv));
        LV_STORE(u + j, LV_MUL(LV_LOAD(u + j), LV_DIV(gv, LV_ADD(LV_SET1(1.0f), e))));
    }
#endif
    for (; j < n; j++) u[j] = u[j] * lv_silu(g[j]);
}

static inline void lv_gelu_inplace(float *x, ptrdiff_t n) {
    ptrdiff_t j = 0;
#if LV_SIMD
    for (; j + LV_VL <= n; j += LV_VL) LV_STORE(x + j, lv_vgelu(LV_LOAD(x + j)));
#endif
    for (; j < n; j++) x[j] = lv_gelu(x[j]);
}

/* max of x[0..n) (n >= 1), 16 independent lanes so the loop vectorizes */
static inline float lv_max(const float *x, ptrdiff_t n) {
    float m[16];
    for (int u = 0; u < 16; u++) m[u] = x[0];
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int u = 0; u < 16; u++) m[u] = x[j + u] > m[u] ? x[j + u] : m[u];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    float r = m[0];
    for (int u = 1; u < 16; u++) r = m[u] > r ? m[u] : r;
    return r;
}

/* x[j] = exp(x[j] - sub) in place; returns the sum (16 float lanes, then double) */
static inline double lv_exp_sub_sum(float *x, ptrdiff_t n, float sub) {
    ptrdiff_t j = 0;
#if LV_SIMD
    lv_vec acc = LV_ZERO(), vs = LV_SET1(sub);
    for (; j + LV_VL <= n; j += LV_VL) {
        lv_vec e = lv_vexp(LV_SUB(LV_LOAD(x + j), vs));
        LV_STORE(x + j, e);
        acc = LV_ADD(acc, e);
    }
    double head = lv_vsum(acc);
#else
    double head = 0.0;
#endif
    float s[16] = {0};
    for (; j + 16 <= n; j += 16)
        for (int u = 0; u < 16; u++) {
            float e = lv_expf(x[j + u] - sub);
            x[j + u] = e;
            s[u] += e;
        }
    double tot = 0.0;
    for (; j < n; j++) {
        x[j] = lv_expf(x[j] - sub);
        tot += x[j];
    }
    for (int u = 0; u < 16; u++) tot += s[u];
    return tot + head;
}

/* Row reductions for layer norm / L2 norm: 16 float lanes (vectorized, each lane
 * sums n/16 terms), combined in double. */
static inline double lv_sum(const float *x, ptrdiff_t n) {
    float s[16] = {0};
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int u = 0; u < 16; u++) s[u] += x[j + u];
    double tot = 0.0;
    for (; j < n; j++) tot += x[j];
    for (int u = 0; u < 16; u++) tot += s[u];
    return tot;
}

/* sum of (x - c)^2 */
static inline double lv_sum_sq_dev(const float *x, ptrdiff_t n, float c) {
    float s[16] = {0};
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int u = 0; u < 16; u++) {
            float d = x[j + u] - c;
            s[u] += d * d;
        }
    double tot = 0.0;
    for (; j < n; j++) {
        double d = (double)x[j] - c;
        tot += d * d;
    }
    for (int u = 0; u < 16; u++) tot += s[u];
    return tot;
}

/* -------------------------------------------------- SIMD block dequantizers
 * Vector versions of dequant.pxd's dq_q4_K / dq_q6_K (see the layout sketches
 * there).  Same float operations in the same order (d*sc, dmin*m rounded to float,
 * then q*dl - ml with a separate multiply and subtract), so with -ffp-contract=off
 * they are bit-identical to the scalar code and to gguf.quants.  Each returns 1 when
 * it handled the block, 0 when no SIMD version was compiled in (caller falls back). */
static inline void lv_k_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 0x3F;
        *mn = s[j + 4] & 0x3F;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
}

/* A row of n little-endian halves -> floats (exact), 16/8 at a time with F16C. */
static inline void lv_f16_row(const uint8_t *src, float *dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * i))));
#elif defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
#endif
    for (; i < n; i++) dst[i] = lv_load_f16(src + 2 * i);
}

static inline int lv_dq_q4_K_simd(const uint8_t *b, float *y) {
#if defined(__AVX512F__) || defined(__AVX2__)
    const float d = lv_load_f16(b), dmin = lv_load_f16(b + 2);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++) {
        int sc, mn;
        lv_k_scale_min(b + 4, 2 * c, &sc, &mn);
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        lv_k_scale_min(b + 4, 2 * c + 1, &sc, &mn);
        const float d2 = d * (float)sc, m2 = dmin * (float)mn;
#if defined(__AVX512F__)
        const __m512 vd1 = _mm512_set1_ps(d1), vm1 = _mm512_set1_ps(m1);
        const __m512 vd2 = _mm512_set1_ps(d2), vm2 = _mm512_set1_ps(m2);
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        const __m256i mask = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(q, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
        for (int g = 0; g < 2; g++) {
            __m128i l8 = g ? _mm256_extracti128_si256(lo, 1) : _mm256_castsi256_si128(lo);
            __m128i h8 = g ? _mm256_extracti128_si256(hi, 1) : _mm256_castsi256_si128(hi);
            __m512 fl = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(l8));
            __m512 fh = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(h8));
            _mm512_storeu_ps(y + 64 * c + 16 * g, _mm512_sub_ps(_mm512_mul_ps(vd1, fl), vm1));
            _mm512_storeu_ps(y + 64 * c + 32 + 16 * g, _mm512_sub_ps(_mm512_mul_ps(vd2, fh), vm2));
        }
#else
        const __m256 vd1 = _mm256_set1_ps(d1), vm1 = _mm256_set1_ps(m1);
        const __m256 vd2 = _mm256_set1_ps(d2), vm2 = _mm256_set1_ps(m2);
        const __m128i mask = _mm_set1_epi8(0x0F);
        for (int g = 0; g < 4; g++) {
            __m128i v = _mm_loadl_epi64((const __m128i *)(qs + 32 * c + 8 * g));
            __m256 fl = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(v, mask)));
            __m256 fh = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), mask)));
            _mm256_storeu_ps(y + 64 * c + 8 * g, _mm256_sub_ps(_mm256_mul_ps(vd1, fl), vm1));
            _mm256_storeu_ps(y + 64 * c + 32 + 8 * g, _mm256_sub_ps(_mm256_mul_ps(vd2, fh), vm2));
        }
#endif
    }
    return 1;
#else
    (void)b; (void)y;
    return 0;
#endif
}

static inline int lv_dq_q6_K_simd(const uint8_t *b, float *y) {
#if defined(__AVX512F__) || defined(__AVX2__)
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = lv_load_f16(b + 208);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    for (int h = 0; h < 2; h++) {
        const __m256i vh = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
        const __m256i vl0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h));
        const __m256i vl1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32));
        for (int s2 = 0; s2 < 4; s2++) {
            __m256i lo = (s2 & 1) ? vl1 : vl0;
            if (s2 >> 1) lo = _mm256_srli_epi16(lo, 4);
            lo = _mm256_and_si256(lo, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(vh, 2 * s2), m2);
            /* q + 32 in 0..63 as bytes; the -32 is applied in int32 below */
            __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
            float *yy = y + 128 * h + 32 * s2;
#if defined(__AVX512F__)
            const __m512i off = _mm512_set1_epi32(32);
            for (int g = 0; g < 2; g++) {
                __m128i q8 = g ? _mm256_extracti128_si256(q, 1) : _mm256_castsi256_si128(q);
                __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q8), off));
                __m512 dl = _mm512_set1_ps(d * (float)sc[8 * h + 2 * s2 + g]);
                _mm512_storeu_ps(yy + 16 * g, _mm512_mul_ps(dl, f));
            }
#else
            const __m256i off = _mm256_set1_epi32(32);
            __m128i q16[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
            for (int g = 0; g < 2; g++) {
                __m256 dl = _mm256_set1_ps(d * (float)sc[8 * h + 2 * s2 + g]);
                __m256 f0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(q16[g]), off));
                __m256 f1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(
                    _mm256_cvtepu8_epi32(_mm_srli_si128(q16[g], 8)), off));
                _mm256_storeu_ps(yy + 16 * g, _mm256_mul_ps(dl, f0));
                _mm256_storeu_ps(yy + 16 * g + 8, _mm256_mul_ps(dl, f1));
            }
#endif
        }
    }
    return 1;
#else
    (void)b; (void)y;
    return 0;
#endif
}

/* --------------------------------------------------------- dot micro-kernel
 * out[i, j] = dot(x[i, :K], w[j, :K]) (+ bias[j]) for an mr x nr tile (x rows x W
 * rows), accumulating 16 (8) lanes along K and reducing at the end.  W rows are
 * used exactly as dequantized (K contiguous), x as given: nothing is packed, which
 * is what small n wants.  AVX-512: 4 x 6 tile = 24 zmm accumulators, 10 loads per
 * 24 FMAs; the horizontal sums cost ~1/(K/16) of the FMA work. */

#if defined(__AVX512F__)
#define LV_MR 4
#define LV_NR 6
#define LV_ISA "avx512"

static inline float lv_hsum512(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static inline __attribute__((always_inline)) void lv_kern(
        const int MR, const int NR,
        const float *x, ptrdiff_t ldx, const float *w, ptrdiff_t ldw, ptrdiff_t K,
        float *out, ptrdiff_t ldo, const float *bias) {
    __m512 acc[LV_MR][LV_NR];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    ptrdiff_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 xv[LV_MR];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_ps(x + i * ldx + k);
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) {
            __m512 wv = _mm512_loadu_ps(w + j * ldw + k);
            _Pragma("GCC unroll 16")
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    if (k < K) {  /* K tail (only for F32/F16 weights of odd width): masked loads */
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
        __m512 xv[LV_MR];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, w + j * ldw + k);
            _Pragma("GCC unroll 16")
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++)
            out[i * ldo + j] = lv_hsum512(acc[i][j]) + (bias ? bias[j] : 0.0f);
}

#elif defined(__AVX2__) && defined(__FMA__)
#define LV_MR 3
#define LV_NR 4
#define LV_ISA "avx2"

static inline float lv_hsum256(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static inline __m256i lv_tail_mask256(ptrdiff_t r) {
    static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tbl + 8 - r));
}

static inline __attribute__((always_inline)) void lv_kern(
        const int MR, const int NR,
        const float *x, ptrdiff_t ldx, const float *w, ptrdiff_t ldw, ptrdiff_t K,
        float *out, ptrdiff_t ldo, const float *bias) {
    __m256 acc[LV_MR][LV_NR];
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    ptrdiff_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[LV_MR];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(x + i * ldx + k);
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) {
            __m256 wv = _mm256_loadu_ps(w + j * ldw + k);
            _Pragma("GCC unroll 16")
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    if (k < K) {
        __m256i m = lv_tail_mask256(K - k);
        __m256 xv[LV_MR];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < MR; i++) xv[i] = _mm256_maskload_ps(x + i * ldx + k, m);
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) {
            __m256 wv = _mm256_maskload_ps(w + j * ldw + k, m);
            _Pragma("GCC unroll 16")
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++)
            out[i * ldo + j] = lv_hsum256(acc[i][j]) + (bias ? bias[j] : 0.0f);
}

#else
#define LV_MR 2
#define LV_NR 2
#define LV_ISA "scalar"

static inline void lv_kern(
        const int MR, const int NR,
        const float *x, ptrdiff_t ldx, const float *w, ptrdiff_t ldw, ptrdiff_t K,
        float *out, ptrdiff_t ldo, const float *bias) {
    _Pragma("GCC unroll 16")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 16")
        for (int j = 0; j < NR; j++) {
            /* 8 partial sums so the compiler can keep several FMAs in flight */
            float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            const float *xi = x + i * ldx, *wj = w + j * ldw;
            ptrdiff_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int u = 0; u < 8; u++) s[u] += xi[k + u] * wj[k + u];
            for (; k < K; k++) s[0] += xi[k] * wj[k];
            out[i * ldo + j] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
                               + (bias ? bias[j] : 0.0f);
        }
}
#endif

/* ------------------------------------------------- broadcast-W micro-kernel
 * For n >= LV_NX the dot form's horizontal sums and its 10 loads per 24 FMAs cost
 * more than packing x once per call.  x is packed transposed in panels of LV_NX
 * rows -- panel[k * LV_NX + i] = x[i0 + i, k], zero rows past n -- and the kernel
 * keeps LV_MW W rows x LV_NX x-rows of accumulators:  per k it loads one panel
 * line (LV_NX floats) and broadcasts LV_MW weights W[r, k] from the (row-major,
 * just dequantized) tile:  AVX-512: 12 x 32 = 24 zmm accumulators, 2 loads + 12
 * broadcasts per 24 FMAs, no reduction.  The result tile tmp[r * LV_NX + i] is
 * written to out by the caller (transposed). */
#if LV_SIMD
#define LV_NX (2 * LV_VL)  /* widest panel: 2 vectors of x rows */
/* NXV vectors (1 or 2) of x rows x MW weight rows of accumulators. */
static inline __attribute__((always_inline)) void lv_kern_bx(
        const int NXV, const int MW, const float *panel, const float *w, ptrdiff_t ldw,
        ptrdiff_t K, float *tmp) {
    const int NXP = NXV * LV_VL;
    lv_vec acc[LV_MW][2];
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MW; r++)
        _Pragma("GCC unroll 16")
        for (int v = 0; v < NXV; v++) acc[r][v] = LV_ZERO();
    for (ptrdiff_t k = 0; k < K; k++) {
        lv_vec xv[2];
        _Pragma("GCC unroll 16")
        for (int v = 0; v < NXV; v++) xv[v] = LV_LOAD(panel + k * NXP + v * LV_VL);
        _Pragma("GCC unroll 16")
        for (int r = 0; r < MW; r++) {
            lv_vec wb = LV_BCAST(w + r * ldw + k);
            _Pragma("GCC unroll 16")
            for (int v = 0; v < NXV; v++) acc[r][v] = LV_FMA(xv[v], wb, acc[r][v]);
        }
    }
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MW; r++)
        _Pragma("GCC unroll 16")
        for (int v = 0; v < NXV; v++) LV_STORE(tmp + r * NXP + v * LV_VL, acc[r][v]);
}
#else
#define LV_NX 8
#define LV_MW 4
static inline void lv_kern_bx(
        const int NXV, const int MW, const float *panel, const float *w, ptrdiff_t ldw,
        ptrdiff_t K, float *tmp) {
    const int NXP = NXV * LV_VL;
    float acc[LV_MW][LV_NX];
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MW; r++)
        for (int i = 0; i < NXP; i++) acc[r][i] = 0.0f;
    for (ptrdiff_t k = 0; k < K; k++)
        _Pragma("GCC unroll 16")
        for (int r = 0; r < MW; r++) {
            float wv = w[r * ldw + k];
            for (int i = 0; i < NXP; i++) acc[r][i] += panel[k * NXP + i] * wv;
        }
    _Pragma("GCC unroll 16")
    for (int r = 0; r < MW; r++)
        for (int i = 0; i < NXP; i++) tmp[r * NXP + i] = acc[r][i];
}
#endif

/* Pack rows [0, rows) of x (rows <= nxp) into one transposed panel (K x nxp). */
static inline void lv_pack_x(const float *x, ptrdiff_t ldx, ptrdiff_t rows, ptrdiff_t K,
                             float *panel, int nxp) {
    for (ptrdiff_t k = 0; k < K; k++) {
        ptrdiff_t i = 0;
        for (; i < rows; i++) panel[k * nxp + i] = x[i * ldx + k];
        for (; i < nxp; i++) panel[k * nxp + i] = 0.0f;
    }
}

/* lv_bx_tile: out[i, j] = sum_k panel[k, i] w[j, k] (+ bias[j]) for
 * i < nx (<= nxp), j < mw (<= LV_MW); nxp (panel width) is LV_VL or 2 * LV_VL.
 * out is row-major with leading dimension ldo. */
/* lv_bx_raw: tmp[j * nxp + i] = sum_k w[j, k] panel[k, i] for j < mw (<= LV_MW),
 * i < nxp; returns 0 for an unsupported (nxp, mw). */
static inline int lv_bx_raw(const float *panel, int nxp, const float *w, ptrdiff_t ldw, int mw,
                            ptrdiff_t K, float *tmp) {
    const int nxv = nxp > LV_VL ? 2 : 1;
    switch (nxv * 16 + mw) {
#define LV_B(v, m) case (v) * 16 + (m): lv_kern_bx((v), (m), panel, w, ldw, K, tmp); return 1;
#define LV_BB(m) LV_B(1, m) LV_B(2, m)
        LV_BB(1) LV_BB(2) LV_BB(3) LV_BB(4)
#if LV_MW >= 6
        LV_BB(5) LV_BB(6)
#endif
#if LV_MW >= 12
        LV_BB(7) LV_BB(8) LV_BB(9) LV_BB(10) LV_BB(11) LV_BB(12)
#endif
#undef LV_B
#undef LV_BB
        default: return 0;
    }
}

static inline void lv_bx_tile(const float *panel, int nxp, int nx, const float *w, ptrdiff_t ldw,
                              int mw, ptrdiff_t K, float *out, ptrdiff_t ldo, const float *bias) {
    float tmp[LV_MW * LV_NX] __attribute__((aligned(64)));
    if (!lv_bx_raw(panel, nxp, w, ldw, mw, K, tmp)) return;
    for (int i = 0; i < nx; i++) {
        float *o = out + i * ldo;
        if (bias) {
            for (int j = 0; j < mw; j++) o[j] = tmp[j * nxp + i] + bias[j];
        } else {
            for (int j = 0; j < mw; j++) o[j] = tmp[j * nxp + i];
        }
    }
}

/* ------------------------------------------------------- attention helpers
 * lv_ab_tile: c[r, i] = rscale[r] * sum_k a[r, k] b[k, i] for r < mr (<= LV_MW),
 * i < nc (<= nxp), b a panel of nxp (LV_VL or LV_NX) columns, row-major (row k at
 * b + k * nxp).  The same broadcast micro-kernel as the matmul panel path (a row
 * elements broadcast, b lines loaded), without the transpose on the way out:
 * attention uses it for scores = Q_blk . K^T (a = Q rows, b = packed K^T, K = d)
 * and ctx = P . V (a = probability rows, b = a V column panel, K = keys). */
static inline void lv_ab_tile(const float *a, ptrdiff_t lda, int mr, const float *b, int nxp,
                              ptrdiff_t K, float *c, ptrdiff_t ldc, int nc, const float *rscale) {
    float tmp[LV_MW * LV_NX] __attribute__((aligned(64)));
    if (!lv_bx_raw(b, nxp, a, lda, mr, K, tmp)) return;
    for (int r = 0; r < mr; r++) {
        float *o = c + r * ldc;
        const float *t = tmp + r * nxp;
        if (rscale) {
            const float s = rscale[r];
            for (int i = 0; i < nc; i++) o[i] = t[i] * s;
        } else {
            for (int i = 0; i < nc; i++) o[i] = t[i];
        }
    }
}

/* NeoX rotate-half rotary embedding of one head row (d = 2 * half), times scale:
 * y1 = (x1 cos - x2 sin) s, y2 = (x2 cos + x1 sin) s. */
static inline void lv_rope_row(const float *restrict x, const float *restrict cs,
                               const float *restrict sn, ptrdiff_t half, float scale,
                               float *restrict y) {
    for (ptrdiff_t j = 0; j < half; j++) {
        const float x1 = x[j], x2 = x[j + half];
        y[j] = (x1 * cs[j] - x2 * sn[j]) * scale;
        y[j + half] = (x2 * cs[j] + x1 * sn[j]) * scale;
    }
}

/* out[j] = mean of rows [0, n) of x (row stride ld), columns [0, nc), nc <= 256;
 * summed in double; zeros when n == 0. */
static inline void lv_mean_rows_cols(const float *x, ptrdiff_t ld, ptrdiff_t n, ptrdiff_t nc,
                                     float *out) {
    double acc[256];
    for (ptrdiff_t j = 0; j < nc; j++) acc[j] = 0.0;
    for (ptrdiff_t t = 0; t < n; t++) {
        const float *row = x + t * ld;
        for (ptrdiff_t j = 0; j < nc; j++) acc[j] += row[j];
    }
    for (ptrdiff_t j = 0; j < nc; j++) out[j] = n ? (float)(acc[j] / (double)n) : 0.0f;
}

static inline int lv_nx(void) { return LV_NX; }
static inline int lv_vl(void) { return LV_VL; }
static inline int lv_mw(void) { return LV_MW; }

/* lv_dot_tile: one mr x nr tile (mr <= LV_MR, nr <= LV_NR) of out = x . w^T + bias.
 * Every (mr, nr) pair gets its own fully unrolled copy of the kernel so that the
 * accumulators live in registers; the switch picks it. */
#define LV_K(m, n) case (m) * 8 + (n): lv_kern((m), (n), x, ldx, w, ldw, K, out, ldo, bias); break;
#define LV_KROW(m) LV_K(m, 1) LV_K(m, 2) LV_K(m, 3) LV_K(m, 4) LV_K(m, 5) LV_K(m, 6)

static inline void lv_dot_tile(const float *x, ptrdiff_t ldx, int mr,
                               const float *w, ptrdiff_t ldw, int nr, ptrdiff_t K,
                               float *out, ptrdiff_t ldo, const float *bias) {
    switch (mr * 8 + nr) {
#if LV_MR >= 1 && LV_NR == 6
        LV_KROW(1) LV_KROW(2) LV_KROW(3) LV_KROW(4)
#elif LV_NR == 4
        LV_K(1, 1) LV_K(1, 2) LV_K(1, 3) LV_K(1, 4)
        LV_K(2, 1) LV_K(2, 2) LV_K(2, 3) LV_K(2, 4)
        LV_K(3, 1) LV_K(3, 2) LV_K(3, 3) LV_K(3, 4)
#else
        LV_K(1, 1) LV_K(1, 2) LV_K(2, 1) LV_K(2, 2)
#endif
        default: break;
    }
}
#undef LV_K
#undef LV_KROW

static inline int lv_mr(void) { return LV_MR; }
static inline int lv_nr(void) { return LV_NR; }
static inline const char *lv_isa(void) { return LV_ISA; }

#endif /* LV_SIMD_H */
