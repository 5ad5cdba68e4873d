/* lv_amx.h - int8-activation matmul on AMX tiles (Sapphire Rapids and later).
 *
 * y (n, M) = x (n, K) @ dequant(W (M, K)).T + bias, for Q4_K, Q5_K, Q6_K and Q8_0 W.
 *
 * x is quantized per row and block of 256 exactly as the VNNI path does (lv_q8.h:
 * round(x * 127 / amax), one f32 scale per block) and is the A operand (signed int8,
 * 16 x rows x 64 bytes of K per tile).  The weights are the B operand, unpacked per
 * call into panels of 16 rows in the tile's "VNNI quad" layout (B row kq holds, for
 * each weight row i, the 4 quants k = 4 kq .. 4 kq + 3 at bytes 4 i .. 4 i + 3).
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
 * The tile product C[j][i] = sum_k x[j][k] w[i][k] comes out with x rows as rows, so
 * each x row of the 16 x 16 output tile is one 64-byte store.  Every output element is
 * computed by one thread with a fixed order of operations, whatever n, the thread count
 * or the row's position in the batch: a text gets the same vector alone or batched.
 *
 * Tiles (all 16 rows x 64 bytes): 0,1 = C lo/hi of x group 0, 2,3 = of x group 1,
 * 4,5 = A of x groups 0/1, 6,7 = B lo/hi.
 */
#ifndef LV_AMX_H
#define LV_AMX_H

#include <stdint.h>
#include <string.h>
#include "lv_simd.h"
#include "lv_q8.h"          /* lv_q6k_part */

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define LV_AMX 1
#include <immintrin.h>
#else
#define LV_AMX 0
#endif

/* One block of 256 values of a group of 16 quantized x rows (the A operand). */
typedef struct {
    int8_t q[4][16][64];    /* chunk c (64 values), x row j: natural order */
    float d[16];            /* per row: amax / 127 (0 for a zero row) */
    float bsf[8][16];       /* per 32-value sub-block s, per row: d * (sum of quants) */
} lv_amx_x;

/* One block of 256 values of a panel of 16 weight rows (the B operand). */
typedef struct {
    uint8_t lo[4][16][64];  /* chunk c, quad row kq, bytes 4 i + t: low byte of P */
    uint8_t hi[4][16][64];  /* high byte of P (Q8_0: the second 32-block's quants) */
    float d[16];            /* per weight row: the super-block scale d */
    float mn[8][16];        /* per sub-block, per weight row: dmin * m_s (Q4_K, Q5_K);
                               Q8_0: the f16 scale of each 32-block */
} lv_amx_w;

static inline int lv_amx_available(void) { return LV_AMX; }
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
 * values into K / 256 blocks. */
static inline void lv_amx_quant_group(const float *x, Py_ssize_t K, Py_ssize_t nr, lv_amx_x *out) {
    const Py_ssize_t nb = K / 256;
    for (Py_ssize_t b = 0; b < nb; b++) memset(out + b, 0, sizeof(lv_amx_x));
    for (Py_ssize_t j = 0; j < nr; j++) {
        const float *xr = x + j * K;
        for (Py_ssize_t b = 0; b < nb; b++) {
            const float *xb = xr + b * 256;
            lv_amx_x *o = out + b;
            __m512 vmax = _mm512_setzero_ps();
            for (int e = 0; e < 256; e += 16)
                vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xb + e)));
            const float amax = _mm512_reduce_max_ps(vmax);
            if (!(amax > 0.0f)) continue;     /* zero (or NaN) block: stays zero */
            const float id = 127.0f / amax, d = amax / 127.0f;
            const __m512 vid = _mm512_set1_ps(id);
            for (int s = 0; s < 8; s++) {    /* 32 values: half a chunk */
                __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * s), vid));
                __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * s + 16), vid));
                const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
                q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
                q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
                int8_t *dst = &o->q[s >> 1][j][32 * (s & 1)];
                _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(q0));
                _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(q1));
                o->bsf[s][j] = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            }
            o->d[j] = d;
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

/* Q4_K/Q5_K scales and mins of one super-block (12 bytes at blk + 4). */
static inline void lv_amx_kscales(const uint8_t *blk, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 8; j++) {
        const uint8_t *q = blk + 4;
        if (j < 4) {
            sc[j] = q[j] & 63;
            mn[j] = q[j + 4] & 63;
        } else {
            sc[j] = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
            mn[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
}

/* Unpack weight row i of a panel, block b, into natural-order P bytes (256 each)
 * and the panel's per-row scales.  Returns -1 for an unsupported type. */
static inline int lv_amx_unpack_row(int qtype, const uint8_t *blk, int i, lv_amx_w *o,
                                    uint8_t *plo, uint8_t *phi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (qtype == 12 || qtype == 13) {           /* Q4_K (144 bytes), Q5_K (176 bytes) */
        const float d = lv_load_f16(blk), dmin = lv_load_f16(blk + 2);
        uint8_t sc[8], mn[8];
        lv_amx_kscales(blk, sc, mn);
        o->d[i] = d;
        for (int s = 0; s < 8; s++) o->mn[s][i] = dmin * (float)mn[s];
        const uint8_t *qs = blk + (qtype == 12 ? 16 : 48);
        const uint8_t *qh = blk + 16;             /* Q5_K: bit 2c / 2c + 1 of qh[l] */
        for (int c = 0; c < 4; c++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i a = _mm256_and_si256(v, m4);
            __m256i bq = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (qtype == 13) {
                const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                const __m256i one = _mm256_set1_epi8(1);
                const __m256i ha = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c)), one);
                const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c + 1)), one);
                a = _mm256_or_si256(a, _mm256_slli_epi16(ha, 4));
                bq = _mm256_or_si256(bq, _mm256_slli_epi16(hb, 4));
            }
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
 * rb bytes) into nb panel blocks.  tmp: 2 * 16 * 256 bytes of scratch. */
static inline int lv_amx_unpack_panel(int qtype, const uint8_t *w, Py_ssize_t rb, Py_ssize_t nr,
                                      Py_ssize_t nb, lv_amx_w *u, uint8_t *tmp) {
    const Py_ssize_t bb = rb / nb;              /* bytes per 256 values */
    uint8_t *tlo = tmp, *thi = tmp + 16 * 256;
    for (Py_ssize_t b = 0; b < nb; b++) {
        lv_amx_w *o = u + b;
        if (nr < 16) {
            memset(tmp, 0, 2 * 16 * 256);
            memset(o->d, 0, sizeof o->d);
            memset(o->mn, 0, sizeof o->mn);
        }
        for (Py_ssize_t i = 0; i < nr; i++)
            if (lv_amx_unpack_row(qtype, w + i * rb + b * bb, (int)i, o, tlo + 256 * i, thi + 256 * i))
                return -1;
        for (int c = 0; c < 4; c++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(tlo + 256 * i + 64 * c);
            lv_amx_transpose16(r);
            for (int k = 0; k < 16; k++) _mm512_storeu_si512(o->lo[c][k], r[k]);
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(thi + 256 * i + 64 * c);
            lv_amx_transpose16(r);
            for (int k = 0; k < 16; k++) _mm512_storeu_si512(o->hi[c][k], r[k]);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ compute */
/* acc[j] (over the panel's 16 weight rows) += this block's contribution for x row j. */
static inline __attribute__((always_inline)) void
lv_amx_post(const int32_t (*clo)[16], const int32_t (*chi)[16], const lv_amx_w *o,
            const lv_amx_x *xb, int mins, __m512 acc[16]) {
    const __m512 dw = _mm512_loadu_ps(o->d);
    for (int j = 0; j < 16; j++) {
        const __m512i s = _mm512_add_epi32(_mm512_load_si512(clo[j]),
                                           _mm512_slli_epi32(_mm512_load_si512(chi[j]), 8));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xb->d[j])), acc[j]);
    }
    if (mins)
        for (int s = 0; s < 8; s++) {
            const __m512 mn = _mm512_loadu_ps(o->mn[s]);
            for (int j = 0; j < 16; j++)
                acc[j] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(xb->bsf[s][j]), acc[j]);
        }
}

/* Q8_0: the two 32-blocks of chunk c, each with its own weight scale. */
static inline __attribute__((always_inline)) void
lv_amx_post_q80(const int32_t (*ca)[16], const int32_t (*cb)[16], const lv_amx_w *o, int c,
                const lv_amx_x *xb, __m512 acc[16]) {
    const __m512 da = _mm512_loadu_ps(o->mn[2 * c]), db = _mm512_loadu_ps(o->mn[2 * c + 1]);
    for (int j = 0; j < 16; j++) {
        const __m512 dx = _mm512_set1_ps(xb->d[j]);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ca[j])), _mm512_mul_ps(da, dx), acc[j]);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb[j])), _mm512_mul_ps(db, dx), acc[j]);
    }
}

static inline void lv_amx_store(const __m512 acc[16], float *out, Py_ssize_t ldo, Py_ssize_t nrows,
                                Py_ssize_t ncols, const float *bias) {
    const __mmask16 m = ncols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << ncols) - 1);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias) : _mm512_setzero_ps();
    for (Py_ssize_t j = 0; j < nrows; j++)
        _mm512_mask_storeu_ps(out + j * ldo, m, _mm512_add_ps(acc[j], bv));
}

/* One panel (16 weight rows, nb blocks) against one or two x groups (16 rows each):
 * out rows of group 0 at out, of group 1 at out + 16 ldo. */
static inline void lv_amx_panel(int qtype, const lv_amx_w *u, const lv_amx_x *x0, const lv_amx_x *x1,
                                Py_ssize_t nb, float *out, Py_ssize_t ldo, Py_ssize_t nr0,
                                Py_ssize_t nr1, Py_ssize_t ncols, const float *bias) {
    int32_t c0[16][16] __attribute__((aligned(64))), c1[16][16] __attribute__((aligned(64)));
    int32_t c2[16][16] __attribute__((aligned(64))), c3[16][16] __attribute__((aligned(64)));
    __m512 acc0[16], acc1[16];
    for (int j = 0; j < 16; j++) acc0[j] = acc1[j] = _mm512_setzero_ps();
    const int two = x1 != NULL;
    const int mins = qtype == 12 || qtype == 13;
    for (Py_ssize_t b = 0; b < nb; b++) {
        const lv_amx_w *o = u + b;
        const lv_amx_x *a0 = x0 + b, *a1 = two ? x1 + b : NULL;
        if (qtype == 8) {
            for (int c = 0; c < 4; c++) {
                _tile_zero(0); _tile_zero(1);
                _tile_loadd(6, o->lo[c], 64);
                _tile_loadd(7, o->hi[c], 64);
                _tile_loadd(4, a0->q[c], 64);
                _tile_dpbssd(0, 4, 6);
                _tile_dpbssd(1, 4, 7);
                if (two) {
                    _tile_zero(2); _tile_zero(3);
                    _tile_loadd(5, a1->q[c], 64);
                    _tile_dpbssd(2, 5, 6);
                    _tile_dpbssd(3, 5, 7);
                }
                _tile_stored(0, c0, 64);
                _tile_stored(1, c1, 64);
                lv_amx_post_q80((const int32_t (*)[16])c0, (const int32_t (*)[16])c1, o, c, a0, acc0);
                if (two) {
                    _tile_stored(2, c2, 64);
                    _tile_stored(3, c3, 64);
                    lv_amx_post_q80((const int32_t (*)[16])c2, (const int32_t (*)[16])c3, o, c, a1, acc1);
                }
            }
            continue;
        }
        _tile_zero(0); _tile_zero(1);
        if (two) { _tile_zero(2); _tile_zero(3); }
        for (int c = 0; c < 4; c++) {
            _tile_loadd(6, o->lo[c], 64);
            _tile_loadd(7, o->hi[c], 64);
            _tile_loadd(4, a0->q[c], 64);
            _tile_dpbsud(0, 4, 6);
            if (qtype == 14) _tile_dpbssd(1, 4, 7); else _tile_dpbsud(1, 4, 7);
            if (two) {
                _tile_loadd(5, a1->q[c], 64);
                _tile_dpbsud(2, 5, 6);
                if (qtype == 14) _tile_dpbssd(3, 5, 7); else _tile_dpbsud(3, 5, 7);
            }
        }
        _tile_stored(0, c0, 64);
        _tile_stored(1, c1, 64);
        lv_amx_post((const int32_t (*)[16])c0, (const int32_t (*)[16])c1, o, a0, mins, acc0);
        if (two) {
            _tile_stored(2, c2, 64);
            _tile_stored(3, c3, 64);
            lv_amx_post((const int32_t (*)[16])c2, (const int32_t (*)[16])c3, o, a1, mins, acc1);
        }
    }
    lv_amx_store(acc0, out, ldo, nr0, ncols, bias);
    if (two) lv_amx_store(acc1, out + 16 * ldo, ldo, nr1, ncols, bias);
}

#else   /* !LV_AMX: the module still builds (and says it is unavailable) */
static inline void lv_amx_configure(void) {}
static inline void lv_amx_release(void) {}
static inline void lv_amx_quant_group(const float *x, Py_ssize_t K, Py_ssize_t nr, lv_amx_x *out) {
    (void)x; (void)K; (void)nr; (void)out;
}
static inline Py_ssize_t lv_amx_row_bytes(int qtype, Py_ssize_t K) { (void)qtype; (void)K; return -1; }
static inline int lv_amx_unpack_panel(int qtype, const uint8_t *w, Py_ssize_t rb, Py_ssize_t nr,
                                      Py_ssize_t nb, lv_amx_w *u, uint8_t *tmp) {
    (void)qtype; (void)w; (void)rb; (void)nr; (void)nb; (void)u; (void)tmp;
    return -1;
}
static inline void lv_amx_panel(int qtype, const lv_amx_w *u, const lv_amx_x *x0, const lv_amx_x *x1,
                                Py_ssize_t nb, float *out, Py_ssize_t ldo, Py_ssize_t nr0,
                                Py_ssize_t nr1, Py_ssize_t ncols, const float *bias) {
    (void)qtype; (void)u; (void)x0; (void)x1; (void)nb; (void)out; (void)ldo; (void)nr0; (void)nr1;
    (void)ncols; (void)bias;
}
#endif

#endif
