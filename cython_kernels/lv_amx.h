/* lv_amx.h - int8-activation matmul on AMX tiles (Sapphire Rapids and later).
 *
 * y (n, M) = x (n, K) @ dequant(W (M, K)).T + bias, for Q4_K, Q5_K, Q6_K and Q8_0 W.
 *
 * The weights are the A operand: unpacked per call into panels of 16 rows, in their
 * natural order (16 weight rows x 64 bytes of K per tile, read with the row stride K,
 * so no transposition).  x is quantized per row and block of 256 exactly as the VNNI
 * path does (lv_q8.h: round(x * 127 / amax), one f32 scale per block) into groups of
 * 16 rows in the B operand's "VNNI quad" layout (B row kq holds, for each x row j,
 * the 4 values k = 4 kq .. 4 kq + 3 at bytes 4 j .. 4 j + 3).
 *
 * K-quant sub-block scales differ every 16 or 32 values, but a tile multiply sums over
 * 64.  Rather than one tile multiply per sub-block (each followed by float scaling of a
 * 16 x 16 tile), the integer sub-block scale is folded into the weight:
 * P = q * sc (Q4_K 0..945, Q5_K 0..1953, Q6_K (q - 32) * sc in -4096..4096) is split
 * into its low byte (unsigned) and high byte (Q4_K/Q5_K unsigned, Q6_K signed), two B
 * planes multiplied with the same A tile; then per block of 256
 *     isum = C_lo + 256 C_hi = sum_s sc_s * dot_s       (exact int32)
 *     y   += d_x * d_w * isum  -  sum_s (dmin_w m_s) * (d_x bsum_s)   (the mins: Q4_K/Q5_K)
 * so the block's integer sum is exact (the VNNI path rounds each 16-group's product to
 * float first); Q6_K's -32 offset is inside P and needs no mins term.  Q8_0 has one f16
 * scale per 32 values: its two 32-blocks of a chunk go to two planes (each zero where
 * the other is not) and are scaled per chunk.
 *
 * The tile product C[i][j] = sum_k w[i][k] x[j][k] comes out with weight rows as rows;
 * its float accumulators are transposed once per output tile.  Every output element is
 * computed by one thread with a fixed order of operations, whatever n, the thread count
 * or the row's position in the batch: a text gets the same vector alone or batched.
 *
 * Tiles (all 16 rows x 64 bytes): 0,1 = C lo/hi of x group 0, 2,3 = of x group 1,
 * 4,5 = A lo/hi (weights), 6,7 = B of x groups 0/1.
 */
#ifndef LV_AMX_H
#define LV_AMX_H

#include <stdint.h>
#include <string.h>
#include "lv_simd.h"
#include "lv_q8.h"          /* lv_q4k_scale_min, lv_q5k_hbit, lv_q6k_part */

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define LV_AMX 1
#include <immintrin.h>
#else
#define LV_AMX 0
#endif

/* One block of 256 values of a group of 16 quantized x rows (the B operand). */
typedef struct {
    int8_t q[4][16][64];    /* chunk c, quad row kq, bytes 4 j + t: x[j][64 c + 4 kq + t] */
    float d[16];            /* per row: amax / 127 (0 for a zero row) */
    float bsf[8][16];       /* per 32-value sub-block s, per row: d * (sum of quants) */
} lv_amx_x;

/* The scales of one block of 256 values of a panel of 16 weight rows. */
typedef struct {
    float d[16];            /* per weight row: the super-block scale d */
    float mn[8][16];        /* per sub-block, per weight row: dmin * m_s (Q4_K, Q5_K);
                               Q8_0: the f16 scale of each 32-block */
} lv_amx_w;

_Static_assert(sizeof(lv_amx_w) == 144 * sizeof(float), "amx.pyx W_FLOATS");

static inline int lv_amx_available(void) { return LV_AMX; }

/* This thread's share [lv_amx_first(n, 0), lv_amx_first(n, 1)) of n items: contiguous
 * equal runs (returned by value: Cython keeps variables assigned in a parallel block
 * private, but not ones passed by address). */
static inline Py_ssize_t lv_amx_first(Py_ssize_t n, int next) {
#ifdef _OPENMP
    const Py_ssize_t t = omp_get_thread_num() + next, nt = omp_get_num_threads();
#else
    const Py_ssize_t t = next, nt = 1;
#endif
    return n * t / nt;
}
static inline size_t lv_amx_x_size(void) { return sizeof(lv_amx_x); }
static inline size_t lv_amx_w_size(void) { return sizeof(lv_amx_w); }

#if LV_AMX
typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) lv_amx_cfg;

/* Load this thread's tile configuration: 8 tiles of 16 rows x 64 bytes.  Tile state is
 * per thread; every OpenMP thread of a call configures its own. */
static inline void lv_amx_configure(void) {
    lv_amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

static inline void lv_amx_release(void) { _tile_release(); }

/* ------------------------------------------------------------- activations */
/* Quantize x rows r0 .. r0 + nr - 1 (nr <= 16; the rest of the group is zero) of K
 * values into K / 256 blocks.  tmp: 16 * 256 bytes of scratch. */
static inline void lv_amx_transpose16(__m512i r[16]);
static inline void lv_amx_quant_group(const float *x, Py_ssize_t K, Py_ssize_t nr, lv_amx_x *out,
                                      int8_t *tmp) {
    const Py_ssize_t nb = K / 256;
    for (Py_ssize_t b = 0; b < nb; b++) {
        lv_amx_x *o = out + b;
        memset(tmp, 0, 16 * 256);
        memset(o->d, 0, sizeof o->d);
        memset(o->bsf, 0, sizeof o->bsf);
        for (Py_ssize_t j = 0; j < nr; j++) {
            const float *xb = x + j * K + b * 256;
            __m512 vmax = _mm512_setzero_ps();
            for (int e = 0; e < 256; e += 16)
                vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xb + e)));
            const float amax = _mm512_reduce_max_ps(vmax);
            if (!(amax > 0.0f)) continue;     /* zero (or NaN) block: stays zero */
            const float id = 127.0f / amax, d = amax / 127.0f;
            const __m512 vid = _mm512_set1_ps(id);
            const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
            for (int s = 0; s < 8; s++) {    /* 32 values */
                __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * s), vid));
                __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * s + 16), vid));
                q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
                q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
                int8_t *dst = tmp + 256 * j + 32 * s;
                _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(q0));
                _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(q1));
                o->bsf[s][j] = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            }
            o->d[j] = d;
        }
        for (int c = 0; c < 4; c++) {          /* natural rows -> quad layout */
            __m512i r[16];
            for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_si512(tmp + 256 * j + 64 * c);
            lv_amx_transpose16(r);
            for (int k = 0; k < 16; k++) _mm512_storeu_si512(o->q[c][k], r[k]);
        }
    }
}

/* ------------------------------------------------------------------ weights */
/* 16 x 16 transpose of dwords: r[i] dword k -> r[k] dword i (in place). */
static inline void lv_amx_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        u[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* u[4 k + m], 128-bit lane L: column 4 L + m of rows 4 k .. 4 k + 3 */
    for (int m = 0; m < 4; m++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* 64 16-bit products (two halves of 32) -> their low and high bytes, 64 each. */
static inline void lv_amx_split(__m512i pa, __m512i pb, int sgn, uint8_t *lo, uint8_t *hi) {
    _mm256_storeu_si256((__m256i *)lo, _mm512_cvtepi16_epi8(pa));
    _mm256_storeu_si256((__m256i *)(lo + 32), _mm512_cvtepi16_epi8(pb));
    const __m512i ha = sgn ? _mm512_srai_epi16(pa, 8) : _mm512_srli_epi16(pa, 8);
    const __m512i hb = sgn ? _mm512_srai_epi16(pb, 8) : _mm512_srli_epi16(pb, 8);
    _mm256_storeu_si256((__m256i *)hi, _mm512_cvtepi16_epi8(ha));
    _mm256_storeu_si256((__m256i *)(hi + 32), _mm512_cvtepi16_epi8(hb));
}

/* Unpack weight row i of a panel, block b, into natural-order P bytes (256 each)
 * and the panel's per-row scales.  Returns -1 for an unsupported type. */
static inline int lv_amx_unpack_row(int qtype, const uint8_t *blk, int i, lv_amx_w *o,
                                    uint8_t *plo, uint8_t *phi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (qtype == 12 || qtype == 13) {           /* Q4_K (144 bytes), Q5_K (176 bytes) */
        const float d = lv_load_f16(blk), dmin = lv_load_f16(blk + 2);
        uint32_t utmp[4];
        lv_q4k_scale_min(blk, utmp);            /* bytes 0..7: scales, 8..15: mins */
        const uint8_t *sc = (const uint8_t *)utmp, *mn = sc + 8;
        o->d[i] = d;
        for (int s = 0; s < 8; s++) o->mn[s][i] = dmin * (float)mn[s];
        const uint8_t *qs = blk + (qtype == 12 ? 16 : 48);
        if (qtype == 12) {
            /* 4-bit quants: P = q * sc by table lookup (VPSHUFB), one 16-entry table of
             * low bytes and one of high bytes per sub-block, in the 128-bit lanes of the
             * sub-block's 32 values */
            const __m512i idx = _mm512_setr_epi32(0x00010000, 0x00030002, 0x00050004, 0x00070006,
                                                  0x00090008, 0x000B000A, 0x000D000C, 0x000F000E,
                                                  0x00010000, 0x00030002, 0x00050004, 0x00070006,
                                                  0x00090008, 0x000B000A, 0x000D000C, 0x000F000E);
            for (int c = 0; c < 4; c++) {
                const __m512i scv = _mm512_inserti64x4(_mm512_set1_epi16(sc[2 * c]),
                                                       _mm256_set1_epi16(sc[2 * c + 1]), 1);
                const __m512i p = _mm512_mullo_epi16(idx, scv);   /* q * sc, q = 0..15, twice */
                const __m512i tl = _mm512_castsi256_si512(_mm512_cvtepi16_epi8(p));
                const __m512i th = _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(p, 8)));
                const __m512i TL = _mm512_shuffle_i64x2(tl, tl, 0x50), TH = _mm512_shuffle_i64x2(th, th, 0x50);
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                const __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
                _mm512_storeu_si512(plo + 64 * c, _mm512_shuffle_epi8(TL, nib));
                _mm512_storeu_si512(phi + 64 * c, _mm512_shuffle_epi8(TH, nib));
            }
            return 0;
        }
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)(blk + 16));   /* Q5_K qh */
        for (int c = 0; c < 4; c++) {               /* Q5_K */
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            const __m256i a = _mm256_or_si256(_mm256_and_si256(v, m4), lv_q5k_hbit(hbits, 2 * c));
            const __m256i bq = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                               lv_q5k_hbit(hbits, 2 * c + 1));
            const __m512i pa = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(a), _mm512_set1_epi16(sc[2 * c]));
            const __m512i pb = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(bq), _mm512_set1_epi16(sc[2 * c + 1]));
            lv_amx_split(pa, pb, 0, plo + 64 * c, phi + 64 * c);
        }
        return 0;
    }
    if (qtype == 14) {                          /* Q6_K, 210 bytes */
        const uint8_t *ql = blk, *qh = blk + 128;
        const int8_t *sc = (const int8_t *)(blk + 192);
        o->d[i] = lv_load_f16(blk + 208);
        for (int s = 0; s < 8; s++) o->mn[s][i] = 0.0f;
        const __m256i m2 = _mm256_set1_epi8(3);
        const __m512i off = _mm512_set1_epi16(32);
        for (int c = 0; c < 4; c++) {          /* chunk c = parts 2c, 2c + 1 of 32 */
            __m512i p[2];
            for (int t = 0; t < 2; t++) {
                const int part = 2 * c + t, h = part >> 2, s2 = part & 3;
                const __m256i q = lv_q6k_part(ql, qh, h, s2, m4, m2);
                /* 16-value groups 2 part, 2 part + 1: their int8 scales in halves */
                const __m512i scv = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * part])),
                    _mm256_set1_epi16(sc[2 * part + 1]), 1);
                p[t] = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_cvtepu8_epi16(q), off), scv);
            }
            lv_amx_split(p[0], p[1], 1, plo + 64 * c, phi + 64 * c);
        }
        return 0;
    }
    if (qtype == 8) {                           /* Q8_0: 8 blocks of 34 bytes */
        o->d[i] = 1.0f;
        for (int c = 0; c < 4; c++) {
            const uint8_t *b0 = blk + 34 * (2 * c), *b1 = blk + 34 * (2 * c + 1);
            o->mn[2 * c][i] = lv_load_f16(b0);
            o->mn[2 * c + 1][i] = lv_load_f16(b1);
            const __m256i z = _mm256_setzero_si256();
            _mm256_storeu_si256((__m256i *)(plo + 64 * c), _mm256_loadu_si256((const __m256i *)(b0 + 2)));
            _mm256_storeu_si256((__m256i *)(plo + 64 * c + 32), z);
            _mm256_storeu_si256((__m256i *)(phi + 64 * c), z);
            _mm256_storeu_si256((__m256i *)(phi + 64 * c + 32), _mm256_loadu_si256((const __m256i *)(b1 + 2)));
        }
        return 0;
    }
    return -1;
}

static inline Py_ssize_t lv_amx_row_bytes(int qtype, Py_ssize_t K) {
    switch (qtype) {
    case 12: return K / 256 * 144;
    case 13: return K / 256 * 176;
    case 14: return K / 256 * 210;
    case 8: return K / 32 * 34;
    default: return -1;
    }
}

/* Unpack weight rows r0 .. r0 + nr - 1 (nr <= 16; missing rows are zero) of w (rows of
 * rb bytes) into the natural-order planes lo, hi (16 rows of K bytes each) and the
 * per-block scales u[nb]. */
static inline int lv_amx_unpack_panel(int qtype, const uint8_t *w, Py_ssize_t rb, Py_ssize_t nr,
                                      Py_ssize_t nb, lv_amx_w *u, uint8_t *lo, uint8_t *hi) {
    const Py_ssize_t bb = rb / nb, K = 256 * nb;   /* bytes per 256 values */
    if (nr < 16) {
        memset(lo, 0, 16 * K);
        memset(hi, 0, 16 * K);
        memset(u, 0, nb * sizeof(lv_amx_w));
    }
    for (Py_ssize_t b = 0; b < nb; b++)
        for (Py_ssize_t i = 0; i < nr; i++)
            if (lv_amx_unpack_row(qtype, w + i * rb + b * bb, (int)i, u + b,
                                  lo + i * K + 256 * b, hi + i * K + 256 * b))
                return -1;
    return 0;
}

/* ------------------------------------------------------------------ compute */
/* acc[i] (over the group's 16 x rows) += this block's contribution for weight row i. */
static inline __attribute__((always_inline)) void
lv_amx_post(const int32_t (*clo)[16], const int32_t (*chi)[16], const lv_amx_w *o,
            const lv_amx_x *xb, int mins, __m512 acc[16]) {
    const __m512 dx = _mm512_loadu_ps(xb->d);
    for (int i = 0; i < 16; i++) {
        const __m512i s = _mm512_add_epi32(_mm512_load_si512(clo[i]),
                                           _mm512_slli_epi32(_mm512_load_si512(chi[i]), 8));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(_mm512_set1_ps(o->d[i]), dx), acc[i]);
    }
    if (mins)
        for (int s = 0; s < 8; s++) {
            const __m512 bs = _mm512_loadu_ps(xb->bsf[s]);
            for (int i = 0; i < 16; i++)
                acc[i] = _mm512_fnmadd_ps(_mm512_set1_ps(o->mn[s][i]), bs, acc[i]);
        }
}

/* Q8_0: the two 32-blocks of chunk c, each with its own weight scale. */
static inline __attribute__((always_inline)) void
lv_amx_post_q80(const int32_t (*ca)[16], const int32_t (*cb)[16], const lv_amx_w *o, int c,
                const lv_amx_x *xb, __m512 acc[16]) {
    const __m512 dx = _mm512_loadu_ps(xb->d);
    for (int i = 0; i < 16; i++) {
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ca[i])),
                                 _mm512_mul_ps(_mm512_set1_ps(o->mn[2 * c][i]), dx), acc[i]);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[i])),
                                 _mm512_mul_ps(_mm512_set1_ps(o->mn[2 * c + 1][i]), dx), acc[i]);
    }
}

/* acc[i][j] (weight row i, x row j) + bias[i] -> out[j * ldo + i]. */
static inline void lv_amx_store(__m512 acc[16], float *out, Py_ssize_t ldo, Py_ssize_t nrows,
                                Py_ssize_t ncols, const float *bias) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(acc[i]);
    lv_amx_transpose16(r);
    const __mmask16 m = ncols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << ncols) - 1);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias) : _mm512_setzero_ps();
    for (Py_ssize_t j = 0; j < nrows; j++)
        _mm512_mask_storeu_ps(out + j * ldo, m, _mm512_add_ps(_mm512_castsi512_ps(r[j]), bv));
}

/* One panel (16 weight rows: planes lo/hi of row stride K, scales u[nb]) against one or
 * two x groups (16 rows each): out rows of group 0 at out, of group 1 at out + 16 ldo. */
static inline void lv_amx_panel(int qtype, const uint8_t *lo, const uint8_t *hi, const lv_amx_w *u,
                                const lv_amx_x *x0, const lv_amx_x *x1, Py_ssize_t nb,
                                float *out, Py_ssize_t ldo, Py_ssize_t nr0, Py_ssize_t nr1,
                                Py_ssize_t ncols, const float *bias) {
    int32_t c0[16][16] __attribute__((aligned(64))), c1[16][16] __attribute__((aligned(64)));
    int32_t c2[16][16] __attribute__((aligned(64))), c3[16][16] __attribute__((aligned(64)));
    __m512 acc0[16], acc1[16];
    for (int i = 0; i < 16; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
    const int two = x1 != NULL;
    const int mins = qtype == 12 || qtype == 13;
    const Py_ssize_t K = 256 * nb;
    for (Py_ssize_t b = 0; b < nb; b++) {
        const lv_amx_w *o = u + b;
        const lv_amx_x *b0 = x0 + b, *b1 = two ? x1 + b : NULL;
        const uint8_t *lb = lo + 256 * b, *hb = hi + 256 * b;
        if (qtype == 8) {
            for (int c = 0; c < 4; c++) {
                _tile_zero(0); _tile_zero(1);
                _tile_loadd(4, lb + 64 * c, K);
                _tile_loadd(5, hb + 64 * c, K);
                _tile_loadd(6, b0->q[c], 64);
                _tile_dpbssd(0, 4, 6);
                _tile_dpbssd(1, 5, 6);
                if (two) {
                    _tile_zero(2); _tile_zero(3);
                    _tile_loadd(7, b1->q[c], 64);
                    _tile_dpbssd(2, 4, 7);
                    _tile_dpbssd(3, 5, 7);
                }
                _tile_stored(0, c0, 64);
                _tile_stored(1, c1, 64);
                lv_amx_post_q80((const int32_t (*)[16])c0, (const int32_t (*)[16])c1, o, c, b0, acc0);
                if (two) {
                    _tile_stored(2, c2, 64);
                    _tile_stored(3, c3, 64);
                    lv_amx_post_q80((const int32_t (*)[16])c2, (const int32_t (*)[16])c3, o, c, b1, acc1);
                }
            }
            continue;
        }
        _tile_zero(0); _tile_zero(1);
        if (two) { _tile_zero(2); _tile_zero(3); }
        for (int c = 0; c < 4; c++) {
            _tile_loadd(4, lb + 64 * c, K);
            _tile_loadd(5, hb + 64 * c, K);
            _tile_loadd(6, b0->q[c], 64);
            _tile_dpbusd(0, 4, 6);
            if (qtype == 14) _tile_dpbssd(1, 5, 6); else _tile_dpbusd(1, 5, 6);
            if (two) {
                _tile_loadd(7, b1->q[c], 64);
                _tile_dpbusd(2, 4, 7);
                if (qtype == 14) _tile_dpbssd(3, 5, 7); else _tile_dpbusd(3, 5, 7);
            }
        }
        _tile_stored(0, c0, 64);
        _tile_stored(1, c1, 64);
        lv_amx_post((const int32_t (*)[16])c0, (const int32_t (*)[16])c1, o, b0, mins, acc0);
        if (two) {
            _tile_stored(2, c2, 64);
            _tile_stored(3, c3, 64);
            lv_amx_post((const int32_t (*)[16])c2, (const int32_t (*)[16])c3, o, b1, mins, acc1);
        }
    }
    lv_amx_store(acc0, out, ldo, nr0, ncols, bias);
    if (two) lv_amx_store(acc1, out + 16 * ldo, ldo, nr1, ncols, bias);
}

#else   /* !LV_AMX: the module still builds (and says it is unavailable) */
static inline void lv_amx_configure(void) {}
static inline void lv_amx_release(void) {}
static inline void lv_amx_quant_group(const float *x, Py_ssize_t K, Py_ssize_t nr, lv_amx_x *out,
                                      int8_t *tmp) {
    (void)x; (void)K; (void)nr; (void)out; (void)tmp;
}
static inline Py_ssize_t lv_amx_row_bytes(int qtype, Py_ssize_t K) { (void)qtype; (void)K; return -1; }
static inline int lv_amx_unpack_panel(int qtype, const uint8_t *w, Py_ssize_t rb, Py_ssize_t nr,
                                      Py_ssize_t nb, lv_amx_w *u, uint8_t *lo, uint8_t *hi) {
    (void)qtype; (void)w; (void)rb; (void)nr; (void)nb; (void)u; (void)lo; (void)hi;
    return -1;
}
static inline void lv_amx_panel(int qtype, const uint8_t *lo, const uint8_t *hi, const lv_amx_w *u,
                                const lv_amx_x *x0, const lv_amx_x *x1, Py_ssize_t nb,
                                float *out, Py_ssize_t ldo, Py_ssize_t nr0, Py_ssize_t nr1,
                                Py_ssize_t ncols, const float *bias) {
    (void)qtype; (void)lo; (void)hi; (void)u; (void)x0; (void)x1; (void)nb; (void)out; (void)ldo;
    (void)nr0; (void)nr1; (void)ncols; (void)bias;
}
#endif

#endif
