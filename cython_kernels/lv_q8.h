/* int8-activation matmul for small n (the llama.cpp scheme), AVX-512 VNNI
 * (AVX2 without VNNI: lv_q8_avx2.h, the same blocks and layout).
 *
 * x (n, K) is quantized per row into Q8_K-style blocks of 256 values: int8 q[256]
 * (round(x * 127 / amax)), the sums of each 16 values (int16 bsums[16]) and one f32
 * scale d = amax / 127.  Each weight row is unpacked once per call into u8 quants
 * (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63, Q8_0 |w|) plus per-lane f32 scales, and then dotted with
 * every quantized x row by VPDPBUSD (u8 weights x s8 activations, 4-element int32
 * lanes); the lane sums are scaled (cvt + FMA: each 4-lane group shares one
 * sub-block scale) and the K-quant offsets (Q4_K mins, Q6_K's -32) are subtracted
 * through the activation block sums:
 *   Q4_K:  y = sum_b (dx_b * sum_e d*sc_s * q_e * a_e  -  dmin * sum_s m_s * dx_b*bsum32_s)
 *   Q5_K:  as Q4_K, q_e = 4 low bits (qs) | 1 high bit (qh) << 4
 *   Q6_K:  y = sum_b (dx_b * sum_e d*sc_g * q_e * a_e  -  32*d * sum_g sc_g * dx_b*bsum16_g)
 *   Q8_0:  y = sum_b dx_b *  sum_e d_blk * |w_e| * (sign(w_e) a_e)
 * Each output element is computed by one thread with a fixed order of operations,
 * so results do not depend on the thread count.
 */
#ifndef LV_Q8_H
#define LV_Q8_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "lv_simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define LV_Q8 1
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#define LV_Q8 2            /* lv_q8_avx2.h: VPMADDUBSW + VPMADDWD instead of VPDPBUSD */
#include <immintrin.h>
#else
#define LV_Q8 0
#endif

/* AVX2 level: a second dot loop for CPUs with AVX-VNNI, compiled with
 * target("avxvnni") (GCC >= 11, clang >= 12) and chosen at run time. */
#if LV_Q8 == 2 && ((defined(__clang__) && __clang_major__ >= 12) || \
                   (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define LV_Q8_AVXVNNI 1
#else
#define LV_Q8_AVXVNNI 0
#endif

/* Layout of a block of 256 quants ("interleaved"): element e = 16 g + p (group g of
 * 16 values, position p) is stored at byte 64 (p / 4) + 4 g + p % 4, i.e. int32 lane
 * g of every 64-byte chunk holds 4 values of group g.  VPDPBUSD over the 4 chunks
 * then accumulates each group's dot product in its own lane of one register, and
 * the per-group scales (Q6_K: one per 16, Q4_K / Q8_0: one per 32 = two lanes) are
 * applied once per block (one cvt + FMA) instead of once per chunk: ~1.3 port-0
 * uops per 64 products instead of 2. */

/* One quantized block of 256 activations (384 bytes, 64-byte multiple). */
typedef struct {
    int8_t q[256];         /* interleaved */
    float bsf[16];         /* d * (sum of each group of 16 quants) */
    float d;
    float pad[15];
} lv_q8x;

/* One unpacked weight super-block (256 elements). */
typedef struct {
    uint8_t q[256];        /* u8 operand of dpbusd, interleaved */
    float scl[16];         /* per group: d * scale */
    float mnf[16];         /* per group: offset, times the group sum of x:
                              Q4_K dmin * min, Q6_K 32 * d * scale, Q8_0 0 */
    uint64_t neg[4];       /* Q8_0: sign mask of each 64-byte chunk */
    float pad[8];
} lv_q8w;

static inline int lv_q8_available(void) { return LV_Q8; }
static inline int lv_q8_avxvnni_built(void) { return LV_Q8_AVXVNNI; }
static inline size_t lv_q8x_size(void) { return sizeof(lv_q8x); }
static inline size_t lv_q8w_size(void) { return sizeof(lv_q8w); }

#if LV_Q8
/* Helpers shared by the AVX-512 and AVX2 versions. */
static inline void lv_q8_zero_block(lv_q8x *o) {
    memset(o->q, 0, 256);
    memset(o->bsf, 0, sizeof o->bsf);
    o->d = 0.0f;
}

/* Q4_K's 12 scale bytes (block + 4) -> 8 scales (utmp bytes 0..7) and 8 mins (8..15),
 * bytewise, as k_scale_min (the bit trick of llama.cpp's ggml-cpu). */
static inline void lv_q4k_scale_min(const uint8_t *blk, uint32_t utmp[4]) {
    memcpy(utmp, blk + 4, 12);
    utmp[3] = ((utmp[2] >> 4) & 0x0f0f0f0fu) | (((utmp[1] >> 6) & 0x03030303u) << 4);
    const uint32_t uaux = utmp[1] & 0x3f3f3f3fu;
    utmp[1] = (utmp[2] & 0x0f0f0f0fu) | (((utmp[0] >> 6) & 0x03030303u) << 4);
    utmp[2] = uaux;
    utmp[0] &= 0x3f3f3f3fu;
}

/* Q5_K, 176 bytes: f16 d, f16 dmin, 12 scale bytes (as Q4_K), qh[32], qs[128].
 * Element 64 c + l (l < 32) is qs[32 c + l] & 15 | bit 2c of qh[l] << 4; element
 * 64 c + 32 + l is qs[32 c + l] >> 4 | bit 2c + 1 of qh[l] << 4 (ggml's
 * dequantize_row_q5_K).  Returns the 0x10 bits of quant bit `bit` of the 32 bytes hb. */
static inline __m256i lv_q5k_hbit(__m256i hb, int bit) {
    const __m256i m = _mm256_set1_epi8((char)(1 << bit));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, m), m), _mm256_set1_epi8(0x10));
}

/* Q6_K quants 0..63 of elements 128 h + 32 s2 .. + 31 (ql: 128 bytes, qh: 64). */
static inline __m256i lv_q6k_part(const uint8_t *ql, const uint8_t *qh, int h, int s2,
                                  __m256i m4, __m256i m2) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32 * (s2 & 1)));
    __m256i hi = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
    lo = _mm256_and_si256(_mm256_srl_epi16(lo, _mm_cvtsi32_si128(4 * (s2 >> 1))), m4);
    hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * s2)), m2);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}
#endif

#if LV_Q8 == 1
/* |x|max of one block of 256. */
static inline float lv_q8_amax(const float *xb) {
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < 256; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
    return _mm512_reduce_max_ps(vmax);
}

/* Quantize 16 values (x * id, rounded to nearest even, clamped to +-127) into the
 * interleaved block (dword c of the group at dst + 64 c); returns their sum. */
static inline int32_t lv_q8_quant_group(const float *x16, float id, int8_t *dst) {
    __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x16), _mm512_set1_ps(id)));
    qi = _mm512_max_epi32(_mm512_min_epi32(qi, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
    uint32_t t[4];
    _mm_storeu_si128((__m128i *)t, _mm512_cvtsepi32_epi8(qi));
    for (int c = 0; c < 4; c++) memcpy(dst + 64 * c, t + c, 4);
    return _mm512_reduce_add_epi32(qi);
}

/* natural order (16 groups x 4 dwords, in 4 registers of 64 bytes) -> interleaved
 * (4 chunks x 16 groups).  Done in registers: storing the natural order in 32-byte
 * pieces and reloading it 64 bytes at a time defeats store forwarding (n = 1,
 * where the unpack dominates, measured 12-25 % slower that way). */
static inline void lv_q8_interleave(__m512i a0, __m512i a1, __m512i a2, __m512i a3, uint8_t *dst) {
    /* dword t of the pair result: chunk c0 + t / 8, group (t % 8): 0..3 from the
     * first operand, 4..7 from the second; source dword 4 (g % 4) + c */
    const __m512i i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i i23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    const __m512i p01 = _mm512_permutex2var_epi32(a0, i01, a1);  /* c0: g0-7 | c1: g0-7 */
    const __m512i p23 = _mm512_permutex2var_epi32(a2, i01, a3);  /* c0: g8-15 | c1: g8-15 */
    const __m512i q01 = _mm512_permutex2var_epi32(a0, i23, a1);
    const __m512i q23 = _mm512_permutex2var_epi32(a2, i23, a3);
    _mm512_storeu_si512(dst, _mm512_shuffle_i64x2(p01, p23, 0x44));
    _mm512_storeu_si512(dst + 64, _mm512_shuffle_i64x2(p01, p23, 0xEE));
    _mm512_storeu_si512(dst + 128, _mm512_shuffle_i64x2(q01, q23, 0x44));
    _mm512_storeu_si512(dst + 192, _mm512_shuffle_i64x2(q01, q23, 0xEE));
}

/* Unpack one weight row (nb super-blocks of 256 elements) of type qtype. */
static inline int lv_q8_unpack_row(int qtype, const uint8_t *w, Py_ssize_t nb, lv_q8w *u) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m512i a[4];
    for (Py_ssize_t b = 0; b < nb; b++) {
        lv_q8w *o = u + b;
        if (qtype == 12 || qtype == 13) {       /* Q4_K, 144 bytes / Q5_K, 176 bytes */
            const int q5 = qtype == 13;
            const uint8_t *blk = w + b * (q5 ? 176 : 144);
            const float d = lv_load_f16(blk), dmin = lv_load_f16(blk + 2);
            uint32_t utmp[4];
            lv_q4k_scale_min(blk, utmp);
            const __m128i sm = _mm_loadu_si128((const __m128i *)utmp);
            /* each of the 8 values twice (two 16-groups per 32-element sub-block) */
            const __m512i sc16 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(sm, sm));
            const __m512i mn16 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(sm, sm));
            _mm512_storeu_ps(o->scl, _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sc16)));
            _mm512_storeu_ps(o->mnf, _mm512_mul_ps(_mm512_set1_ps(dmin), _mm512_cvtepi32_ps(mn16)));
            const uint8_t *qs = blk + (q5 ? 48 : 16);
            const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (q5) {
                    lo = _mm256_or_si256(lo, lv_q5k_hbit(hb, 2 * c));
                    hi = _mm256_or_si256(hi, lv_q5k_hbit(hb, 2 * c + 1));
                }
                a[c] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            }
        } else if (qtype == 14) {               /* Q6_K, 210 bytes */
            const uint8_t *blk = w + b * 210;
            const uint8_t *ql = blk, *qh = blk + 128;
            const int8_t *sc = (const int8_t *)(blk + 192);
            const float d = lv_load_f16(blk + 208);
            __m256i part[8];
            for (int h = 0; h < 2; h++)
                for (int s2 = 0; s2 < 4; s2++)
                    part[4 * h + s2] = lv_q6k_part(ql, qh, h, s2, m4, m2);
            for (int c = 0; c < 4; c++)
                a[c] = _mm512_inserti64x4(_mm512_castsi256_si512(part[2 * c]), part[2 * c + 1], 1);
            const __m128i s8 = _mm_loadu_si128((const __m128i *)sc);
            const __m512 sf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s8));
            _mm512_storeu_ps(o->scl, _mm512_mul_ps(_mm512_set1_ps(d), sf));
            _mm512_storeu_ps(o->mnf, _mm512_mul_ps(_mm512_set1_ps(32.0f * d), sf));
        } else if (qtype == 8) {                /* Q8_0: 8 blocks of 34 bytes */
            const uint8_t *blk = w + b * 8 * 34;
            for (int j = 0; j < 8; j++) {
                const float d = lv_load_f16(blk + 34 * j);
                o->scl[2 * j] = d;
                o->scl[2 * j + 1] = d;
            }
            for (int c = 0; c < 4; c++)
                a[c] = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 34 * (2 * c) + 2))),
                    _mm256_loadu_si256((const __m256i *)(blk + 34 * (2 * c + 1) + 2)), 1);
            lv_q8_interleave(a[0], a[1], a[2], a[3], o->q);
            for (int c = 0; c < 4; c++) {
                __m512i v = _mm512_loadu_si512(o->q + 64 * c);
                o->neg[c] = (uint64_t)_mm512_movepi8_mask(v);
                _mm512_storeu_si512(o->q + 64 * c, _mm512_abs_epi8(v));
            }
            memset(o->mnf, 0, sizeof o->mnf);
            continue;
        } else {
            return -1;
        }
        lv_q8_interleave(a[0], a[1], a[2], a[3], o->q);
    }
    return 0;
}

/* out[r * ldo] = dot(x row r, weight row) + bias for R (<= 4) rows. */
static inline __attribute__((always_inline)) void
lv_q8_rows(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t ldx, const int R,
           const int q80, float *out, Py_ssize_t ldo, float bias, const int vnni) {
    (void)vnni;            /* VPDPBUSD is AVX-512 VNNI here */
    __m512 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (Py_ssize_t b = 0; b < nb; b++) {
        const lv_q8w *o = u + b;
        __m512i dp[4];
        for (int r = 0; r < R; r++) dp[r] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m512i w = _mm512_loadu_si512(o->q + 64 * c);
            for (int r = 0; r < R; r++) {
                __m512i a = _mm512_loadu_si512(x[r * ldx + b].q + 64 * c);
                if (q80)
                    a = _mm512_mask_sub_epi8(a, (__mmask64)o->neg[c], _mm512_setzero_si512(), a);
                dp[r] = _mm512_dpbusd_epi32(dp[r], w, a);
            }
        }
        /* lane g: d_x * (d * sc_g * dot_g  -  mnf_g * sum_g(x quants)) */
        const __m512 s = _mm512_loadu_ps(o->scl);
        const __m512 mn = _mm512_loadu_ps(o->mnf);
        for (int r = 0; r < R; r++) {
            const lv_q8x *xb = x + r * ldx + b;
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp[r]), _mm512_mul_ps(s, _mm512_set1_ps(xb->d)),
                                     acc[r]);
            if (!q80) acc[r] = _mm512_fnmadd_ps(mn, _mm512_loadu_ps(xb->bsf), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r * ldo] = _mm512_reduce_add_ps(acc[r]) + bias;
}

#endif
#if LV_Q8 == 2
#include "lv_q8_avx2.h"
#endif

#if LV_Q8
/* Tests: an unpacked row back in natural element order, q[256 nb] (Q8_0 signed),
 * scl[16 nb] and mnf[16 nb], so w_e = scl_g * q_e - mnf_g can be checked bit for bit. */
static inline void lv_q8_export(const lv_q8w *u, Py_ssize_t nb, int qtype, int16_t *q,
                                float *scl, float *mnf) {
    for (Py_ssize_t b = 0; b < nb; b++) {
        for (int e = 0; e < 256; e++) {
            const int g = e / 16, p = e % 16, at = 64 * (p / 4) + 4 * g + p % 4;
            int v = u[b].q[at];
            if (qtype == 8) {
#if LV_Q8 == 1
                if (u[b].neg[at / 64] >> (at % 64) & 1) v = -v;   /* |w| and a sign mask */
#else
                v = (int8_t)u[b].q[at];                          /* signed as stored */
#endif
            }
            q[256 * b + e] = (int16_t)v;
        }
        memcpy(scl + 16 * b, u[b].scl, sizeof u[b].scl);
        memcpy(mnf + 16 * b, u[b].mnf, sizeof u[b].mnf);
    }
}

/* Quantize one row of K (multiple of 256) floats into K / 256 blocks. */
static inline void lv_q8_quant_row(const float *x, Py_ssize_t K, lv_q8x *out) {
    for (Py_ssize_t b = 0; b < K / 256; b++) {
        const float *xb = x + b * 256;
        lv_q8x *o = out + b;
        const float amax = lv_q8_amax(xb);
        if (!(amax > 0.0f)) {      /* zero (or NaN) block */
            lv_q8_zero_block(o);
            continue;
        }
        const float id = 127.0f / amax, d = amax / 127.0f;
        for (int g = 0; g < 16; g++)
            o->bsf[g] = d * (float)lv_q8_quant_group(xb + 16 * g, id, o->q + 4 * g);
        o->d = d;
    }
}

/* One weight row against all n quantized x rows (nb blocks each). */
static inline __attribute__((always_inline)) void
lv_q8_dot_rows_body(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t n, int qtype,
                    float *out, Py_ssize_t ldo, float bias, const int vnni) {
    Py_ssize_t i = 0;
#define LV_Q8_ROWS(R, Q80) lv_q8_rows(u, nb, x + i * nb, nb, R, Q80, out + i * ldo, ldo, bias, vnni)
    if (qtype == 8) {
        for (; i + 4 <= n; i += 4) LV_Q8_ROWS(4, 1);
        switch (n - i) {
        case 3: LV_Q8_ROWS(3, 1); break;
        case 2: LV_Q8_ROWS(2, 1); break;
        case 1: LV_Q8_ROWS(1, 1); break;
        default: break;
        }
    } else {
        for (; i + 4 <= n; i += 4) LV_Q8_ROWS(4, 0);
        switch (n - i) {
        case 3: LV_Q8_ROWS(3, 0); break;
        case 2: LV_Q8_ROWS(2, 0); break;
        case 1: LV_Q8_ROWS(1, 0); break;
        default: break;
        }
    }
#undef LV_Q8_ROWS
}

static inline void lv_q8_dot_rows_plain(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t n,
                                        int qtype, float *out, Py_ssize_t ldo, float bias) {
    lv_q8_dot_rows_body(u, nb, x, n, qtype, out, ldo, bias, 0);
}

#if LV_Q8_AVXVNNI
static __attribute__((target("avxvnni"))) void
lv_q8_dot_rows_vnni(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t n, int qtype,
                    float *out, Py_ssize_t ldo, float bias) {
    lv_q8_dot_rows_body(u, nb, x, n, qtype, out, ldo, bias, 1);
}
#endif

/* One weight row against all n quantized x rows; vnni != 0 (the CPU has AVX-VNNI,
 * decided once by the caller) takes the AVX-VNNI loop where it is built. */
static inline void lv_q8_dot_rows(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x,
                                  Py_ssize_t n, int qtype, float *out, Py_ssize_t ldo, float bias,
                                  int vnni) {
#if LV_Q8_AVXVNNI
    if (vnni) {
        lv_q8_dot_rows_vnni(u, nb, x, n, qtype, out, ldo, bias);
        return;
    }
#endif
    (void)vnni;
    lv_q8_dot_rows_plain(u, nb, x, n, qtype, out, ldo, bias);
}
#else
static inline void lv_q8_export(const lv_q8w *u, Py_ssize_t nb, int qtype, int16_t *q,
                                float *scl, float *mnf) {
    (void)u; (void)nb; (void)qtype; (void)q; (void)scl; (void)mnf;
}
static inline void lv_q8_quant_row(const float *x, Py_ssize_t K, lv_q8x *out) {
    (void)x; (void)K; (void)out;
}
static inline int lv_q8_unpack_row(int qtype, const uint8_t *w, Py_ssize_t nb, lv_q8w *u) {
    (void)qtype; (void)w; (void)nb; (void)u;
    return -1;
}
static inline void lv_q8_dot_rows(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x,
                                  Py_ssize_t n, int qtype, float *out, Py_ssize_t ldo, float bias,
                                  int vnni) {
    (void)u; (void)nb; (void)x; (void)n; (void)qtype; (void)out; (void)ldo; (void)bias; (void)vnni;
}
#endif

#endif
