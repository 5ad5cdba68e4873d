/* int8-activation matmul, AVX2 (x86-64-v3): the lv_q8.h scheme without VNNI.
 *
 * Same blocks and the same interleaved layout as the AVX-512 version (lv_q8.h): a
 * 64-byte chunk is two 32-byte halves, groups 0-7 and 8-15, one int32 lane per group.
 * VPMADDUBSW (u8 weights x s8 activations -> pairwise int16 sums) then VPMADDWD by
 * ones (-> 4-element int32 lane sums) stands in for VPDPBUSD, as in llama.cpp's AVX2
 * path.  The int16 pair sums cannot saturate: |w| <= 15 (Q4_K), 31 (Q5_K), 63 (Q6_K), 128
 * (|Q8_0|) times |a| <= 127, twice, stays below 32767.  Q8_0 weights stay signed in
 * the unpacked row; each dot takes |w| and moves the sign onto the activation
 * (VPSIGNB), which needs no mask registers.  Where the CPU has AVX-VNNI (Alder Lake,
 * Sapphire Rapids, Zen 5), a second copy of the dot loop compiled for it
 * (lv_q8_dot_rows_vnni, target("avxvnni")) replaces the three instructions by
 * VPDPBUSD on ymm; qmatmul.pyx picks one copy from the CPU features at load.  Included
 * by lv_q8.h only. */

/* |x|max of one block of 256. */
static inline float lv_q8_amax(const float *xb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    for (int i = 0; i < 256; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* Quantize 16 values (x * id, rounded to nearest even, clamped to +-127) into the
 * interleaved block (dword c of the group at dst + 64 c); returns their sum. */
static inline int32_t lv_q8_quant_group(const float *x16, float id, int8_t *dst) {
    int32_t qi[16];
    for (int h = 0; h < 2; h++) {
        __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x16 + 8 * h), _mm256_set1_ps(id)));
        q = _mm256_max_epi32(_mm256_min_epi32(q, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
        _mm256_storeu_si256((__m256i *)(qi + 8 * h), q);
    }
    int32_t s = 0;
    for (int p = 0; p < 16; p++) {
        s += qi[p];
        dst[64 * (p / 4) + p % 4] = (int8_t)qi[p];
    }
    return s;
}

/* natural order (nat: 256 bytes = 64 dwords, dword 4 g + c = group g, bytes 4c..4c+3)
 * -> interleaved (dword 16 c + g): a 16 x 4 dword transpose, four 4 x 4 blocks. */
static inline void lv_q8_interleave2(const uint8_t *nat, uint8_t *dst) {
    for (int g0 = 0; g0 < 16; g0 += 4) {
        __m128 r0 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(nat + 16 * g0)));
        __m128 r1 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(nat + 16 * g0 + 16)));
        __m128 r2 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(nat + 16 * g0 + 32)));
        __m128 r3 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(nat + 16 * g0 + 48)));
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_si128((__m128i *)(dst + 4 * g0), _mm_castps_si128(r0));
        _mm_storeu_si128((__m128i *)(dst + 64 + 4 * g0), _mm_castps_si128(r1));
        _mm_storeu_si128((__m128i *)(dst + 128 + 4 * g0), _mm_castps_si128(r2));
        _mm_storeu_si128((__m128i *)(dst + 192 + 4 * g0), _mm_castps_si128(r3));
    }
}

/* One super-block of each weight type -> scales in o, quants 0..63 (Q8_0: signed) in
 * natural order in nat (lv_q8_interleave2 then interleaves them into o->q). */
static inline void lv_q8_unpack_q4k(const uint8_t *blk, lv_q8w *o, uint8_t *nat, const int q5) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const float d = lv_load_f16(blk), dmin = lv_load_f16(blk + 2);
    uint32_t utmp[4];
    lv_q4k_scale_min(blk, utmp);
    const uint8_t *sm = (const uint8_t *)utmp;
    for (int g = 0; g < 16; g++) {     /* each sub-block of 32 is two groups of 16 */
        o->scl[g] = d * (float)sm[g / 2];
        o->mnf[g] = dmin * (float)sm[8 + g / 2];
    }
    const uint8_t *qs = blk + (q5 ? 48 : 16);   /* Q5_K: qh[32] first (lv_q5k_hbit) */
    const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (q5) {
            lo = _mm256_or_si256(lo, lv_q5k_hbit(hb, 2 * c));
            hi = _mm256_or_si256(hi, lv_q5k_hbit(hb, 2 * c + 1));
        }
        _mm256_store_si256((__m256i *)(nat + 64 * c), lo);
        _mm256_store_si256((__m256i *)(nat + 64 * c + 32), hi);
    }
}

static inline void lv_q8_unpack_q6k(const uint8_t *blk, lv_q8w *o, uint8_t *nat) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const int8_t *sc = (const int8_t *)(blk + 192);
    const float d = lv_load_f16(blk + 208);
    for (int part = 0; part < 8; part++)
        _mm256_store_si256((__m256i *)(nat + 32 * part),
                           lv_q6k_part(blk, blk + 128, part / 4, part % 4, m4, m2));
    for (int g = 0; g < 16; g++) {
        o->scl[g] = d * (float)sc[g];
        o->mnf[g] = 32.0f * d * (float)sc[g];
    }
}

static inline void lv_q8_unpack_q80(const uint8_t *blk, lv_q8w *o, uint8_t *nat) {
    for (int j = 0; j < 8; j++) {      /* 8 blocks of 34 bytes: f16 scale, 32 int8 */
        o->scl[2 * j] = o->scl[2 * j + 1] = lv_load_f16(blk + 34 * j);
        memcpy(nat + 32 * j, blk + 34 * j + 2, 32);
    }
    memset(o->mnf, 0, sizeof o->mnf);
}

/* Unpack one weight row (nb super-blocks of 256 elements) of type qtype. */
static inline int lv_q8_unpack_row(int qtype, const uint8_t *w, Py_ssize_t nb, lv_q8w *u) {
    uint8_t nat[256] __attribute__((aligned(32)));
    for (Py_ssize_t b = 0; b < nb; b++) {
        switch (qtype) {
        case 12: lv_q8_unpack_q4k(w + b * 144, u + b, nat, 0); break;
        case 13: lv_q8_unpack_q4k(w + b * 176, u + b, nat, 1); break;
        case 14: lv_q8_unpack_q6k(w + b * 210, u + b, nat); break;
        case 8: lv_q8_unpack_q80(w + b * 8 * 34, u + b, nat); break;
        default: return -1;
        }
        lv_q8_interleave2(nat, u[b].q);
    }
    return 0;
}

#if LV_Q8_AVXVNNI
/* AVX-VNNI (VEX-encoded VPDPBUSD on ymm): the 4-product int32 lane sums in one
 * instruction instead of three.  The sums are exact either way (the pair sums of
 * VPMADDUBSW cannot saturate, above), so both variants give the same bits. */
static inline __attribute__((target("avxvnni"))) __m256i
lv_q8_dot4_vnni(__m256i acc, __m256i w, __m256i a) {
    return _mm256_dpbusd_avx_epi32(acc, w, a);
}
#endif

/* out[r * ldo] = dot(x row r, weight row) + bias for R (<= 4) rows; vnni (a constant
 * after inlining) selects the AVX-VNNI dot, only inside lv_q8_dot_rows_vnni. */
static inline __attribute__((always_inline)) void
lv_q8_rows(const lv_q8w *u, Py_ssize_t nb, const lv_q8x *x, Py_ssize_t ldx, const int R,
           const int q80, float *out, Py_ssize_t ldo, float bias, const int vnni) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (Py_ssize_t b = 0; b < nb; b++) {
        const lv_q8w *o = u + b;
        __m256i dp[4][2];
        for (int r = 0; r < R; r++) dp[r][0] = dp[r][1] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++)
            for (int h = 0; h < 2; h++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(o->q + 64 * c + 32 * h));
                const __m256i wu = q80 ? _mm256_sign_epi8(w, w) : w;
                for (int r = 0; r < R; r++) {
                    __m256i a = _mm256_loadu_si256((const __m256i *)(x[r * ldx + b].q + 64 * c + 32 * h));
                    if (q80) a = _mm256_sign_epi8(a, w);
#if LV_Q8_AVXVNNI
                    if (vnni) {
                        dp[r][h] = lv_q8_dot4_vnni(dp[r][h], wu, a);
                        continue;
                    }
#endif
                    dp[r][h] = _mm256_add_epi32(dp[r][h],
                                                _mm256_madd_epi16(_mm256_maddubs_epi16(wu, a), ones));
                }
            }
        /* lane g: d_x * (d * sc_g * dot_g  -  mnf_g * sum_g(x quants)) */
        for (int h = 0; h < 2; h++) {
            const __m256 s = _mm256_loadu_ps(o->scl + 8 * h);
            const __m256 mn = _mm256_loadu_ps(o->mnf + 8 * h);
            for (int r = 0; r < R; r++) {
                const lv_q8x *xb = x + r * ldx + b;
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp[r][h]),
                                         _mm256_mul_ps(s, _mm256_set1_ps(xb->d)), acc[r]);
                if (!q80) acc[r] = _mm256_fnmadd_ps(mn, _mm256_loadu_ps(xb->bsf + 8 * h), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        out[r * ldo] = _mm_cvtss_f32(s4) + bias;
    }
}
