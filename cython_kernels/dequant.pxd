# cython: language_level=3
"""GGML block dequantization, one block / one row at a time (shared by quant and matmul).

Every function here is ``cdef inline ... noexcept nogil`` and takes ``const`` pointers
(the weights are read-only memory maps), so this .pxd is the whole implementation:
each module that cimports it compiles its own copy and nothing is imported at run
time.  The arithmetic replicates, operation by operation and in float32, what
``gguf.quants.dequantize`` (the numpy reference) computes, so the results are
bit-identical -- as long as the compiler does not fuse ``a * b - c`` into an FMA:
``quant.pyx`` is therefore compiled with ``-ffp-contract=off`` (see setup.py).
``matmul.pyx`` may contract (it only needs float32 accuracy).

Layout notation in the sketches: ``d``/``dmin``/``m`` are little-endian f16, byte
offsets on the left, element ``e`` of the block on the right.  QK_K = 256.
"""

from libc.stdint cimport int8_t, uint8_t, uint32_t
from libc.string cimport memcpy

cdef extern from "lv_simd.h" nogil:
    float lv_load_f16(const uint8_t *p)
    uint32_t lv_load_u32(const uint8_t *p)
    # AVX-512/AVX2 versions of dq_q4_K / dq_q6_K; return 0 when not compiled in
    int lv_dq_q4_K_simd(const uint8_t *b, float *y)
    int lv_dq_q6_K_simd(const uint8_t *b, float *y)
    void lv_f16_row(const uint8_t *src, float *dst, Py_ssize_t n)

# GGML type ids (gguf.constants.GGMLQuantizationType) and block geometry.
cdef enum:
    T_F32 = 0
    T_F16 = 1
    T_Q4_0 = 2
    T_Q4_1 = 3
    T_Q5_0 = 6
    T_Q5_1 = 7
    T_Q8_0 = 8
    T_Q2_K = 10
    T_Q3_K = 11
    T_Q4_K = 12
    T_Q5_K = 13
    T_Q6_K = 14
    QK = 32        # elements per legacy block
    QK_K = 256     # elements per K-quant super-block


cdef inline int block_elems(int qtype) noexcept nogil:
    """Elements per block of ``qtype`` (0 when unsupported)."""
    if qtype == T_F32 or qtype == T_F16:
        return 1
    if qtype == T_Q4_0 or qtype == T_Q4_1 or qtype == T_Q5_0 or qtype == T_Q5_1 or qtype == T_Q8_0:
        return QK
    if qtype == T_Q2_K or qtype == T_Q3_K or qtype == T_Q4_K or qtype == T_Q5_K or qtype == T_Q6_K:
        return QK_K
    return 0


cdef inline int block_bytes(int qtype) noexcept nogil:
    """Bytes per block of ``qtype`` (0 when unsupported), written as sums of fields."""
    if qtype == T_F32:
        return 4
    if qtype == T_F16:
        return 2
    if qtype == T_Q4_0:
        return 2 + QK // 2
    if qtype == T_Q4_1:
        return 2 + 2 + QK // 2
    if qtype == T_Q5_0:
        return 2 + 4 + QK // 2
    if qtype == T_Q5_1:
        return 2 + 2 + 4 + QK // 2
    if qtype == T_Q8_0:
        return 2 + QK
    if qtype == T_Q2_K:
        return QK_K // 16 + QK_K // 4 + 2 + 2
    if qtype == T_Q3_K:
        return QK_K // 8 + QK_K // 4 + 12 + 2
    if qtype == T_Q4_K:
        return 2 + 2 + 12 + QK_K // 2
    if qtype == T_Q5_K:
        return 2 + 2 + 12 + QK_K // 8 + QK_K // 2
    if qtype == T_Q6_K:
        return QK_K // 2 + QK_K // 4 + QK_K // 16 + 2
    return 0


# ---------------------------------------------------------------------- Q4_0
#  0..1  d
#  2..17 qs[16]   qs[j] = hi:lo   lo -> e = j,  hi -> e = j + 16
#  y[e] = d * (nibble - 8)
cdef inline void dq_q4_0(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef const uint8_t *qs = b + 2
    cdef int j
    for j in range(16):
        y[j] = d * <float>(<int>(qs[j] & 0x0F) - 8)
        y[j + 16] = d * <float>(<int>(qs[j] >> 4) - 8)


# ---------------------------------------------------------------------- Q4_1
#  0..1  d    2..3  m
#  4..19 qs[16]   as Q4_0;  y[e] = d * nibble + m   (product rounded, then sum)
cdef inline void dq_q4_1(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef float m = lv_load_f16(b + 2)
    cdef const uint8_t *qs = b + 4
    cdef int j
    for j in range(16):
        y[j] = d * <float>(qs[j] & 0x0F) + m
        y[j + 16] = d * <float>(qs[j] >> 4) + m


# ---------------------------------------------------------------------- Q5_0
#  0..1  d
#  2..5  qh (u32 LE)  bit e = 5th bit of element e
#  6..21 qs[16]       low nibbles as Q4_0 (lo -> e = j, hi -> e = j + 16)
#  y[e] = d * ((nibble | bit << 4) - 16)
cdef inline void dq_q5_0(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef uint32_t qh = lv_load_u32(b + 2)
    cdef const uint8_t *qs = b + 6
    cdef int j, lo, hi
    for j in range(16):
        lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4)
        hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)
        y[j] = d * <float>(lo - 16)
        y[j + 16] = d * <float>(hi - 16)


# ---------------------------------------------------------------------- Q5_1
#  0..1 d   2..3 m   4..7 qh (u32 LE)   8..23 qs[16]
#  y[e] = d * (nibble | bit << 4) + m
cdef inline void dq_q5_1(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef float m = lv_load_f16(b + 2)
    cdef uint32_t qh = lv_load_u32(b + 4)
    cdef const uint8_t *qs = b + 8
    cdef int j, lo, hi
    for j in range(16):
        lo = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4)
        hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)
        y[j] = d * <float>lo + m
        y[j + 16] = d * <float>hi + m


# ---------------------------------------------------------------------- Q8_0
#  0..1  d
#  2..33 qs int8[32]   y[e] = qs[e] * d
cdef inline void dq_q8_0(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef const int8_t *qs = <const int8_t *>(b + 2)
    cdef int j
    for j in range(32):
        y[j] = <float>qs[j] * d


# ---------------------------------------------------------------------- Q2_K
#   0..15  scales[16]  byte g = mmmm:ssss for the 16-element group g = e // 16
#  16..79  qs[64]      2-bit codes, 4 per byte:
#                        half h (e // 128), l = e % 32, s = (e % 128) // 32
#                        q = (qs[32h + l] >> 2s) & 3
#  80..81  d    82..83 dmin
#  dl = d * ssss;  ml = dmin * mmmm;  y[e] = dl * q - ml
cdef inline void dq_q2_K(const uint8_t *b, float *y) noexcept nogil:
    cdef const uint8_t *scales = b
    cdef const uint8_t *qs = b + 16
    cdef float d = lv_load_f16(b + 80)
    cdef float dmin = lv_load_f16(b + 82)
    cdef int h, s, l, g
    cdef float dl, ml
    for h in range(2):
        for s in range(4):
            for l in range(32):
                g = (h * 128 + s * 32 + l) >> 4
                dl = d * <float>(scales[g] & 0x0F)
                ml = dmin * <float>(scales[g] >> 4)
                y[h * 128 + s * 32 + l] = dl * <float>((qs[h * 32 + l] >> (2 * s)) & 3) - ml


# ---------------------------------------------------------------------- Q3_K
#   0..31   hmask[32]  bit b of hmask[l] belongs to e = 32b + l; a SET bit means
#                      "no offset", a clear bit subtracts 4
#  32..95   qs[64]     2-bit low codes, laid out as Q2_K's
#  96..107  scales[12] sixteen 6-bit scales (then minus 32):
#                       byte i (0..7):  hi nibble -> scale i+8, lo nibble -> scale i
#                       byte 8+i (0..3): bits 2k..2k+1 -> bits 4..5 of scale 4k+i
#  108..109 d
#  dl = d * (scale - 32);  y[e] = dl * (q_low - (bit ? 0 : 4))
cdef inline void dq_q3_K(const uint8_t *b, float *y) noexcept nogil:
    cdef const uint8_t *hmask = b
    cdef const uint8_t *qs = b + 32
    cdef const uint8_t *sc = b + 96
    cdef float d = lv_load_f16(b + 108)
    cdef float dl[16]
    cdef int i, lo, hi, h, s, l, e, q
    for i in range(16):
        if i < 8:
            lo = sc[i] & 0x0F
        else:
            lo = sc[i - 8] >> 4
        hi = (sc[8 + (i & 3)] >> (2 * (i >> 2))) & 3
        dl[i] = d * <float>(<int>(lo | (hi << 4)) - 32)
    for h in range(2):
        for s in range(4):
            for l in range(32):
                e = h * 128 + s * 32 + l
                q = <int>((qs[h * 32 + l] >> (2 * s)) & 3)
                if not ((hmask[l] >> (h * 4 + s)) & 1):
                    q -= 4
                y[e] = dl[e >> 4] * <float>q


# ------------------------------------------------------- K-quant 6-bit scales
#  Q4_K / Q5_K pack 8 (scale, min) pairs of 6 bits in 12 bytes:
#   byte  0..3  MMssssss  (ssssss = scale j,      MM = bits 4..5 of scale j+4)
#   byte  4..7  NNmmmmmm  (mmmmmm = min j,        NN = bits 4..5 of min j+4)
#   byte  8..11 mmmmssss  (low 4 bits of min j+4 | low 4 bits of scale j+4)
cdef inline void k_scale_min(const uint8_t *s, int j, int *sc, int *mn) noexcept nogil:
    if j < 4:
        sc[0] = s[j] & 0x3F
        mn[0] = s[j + 4] & 0x3F
    else:
        sc[0] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30)
        mn[0] = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30)


# ---------------------------------------------------------------------- Q4_K
#   0..1   d      2..3 dmin
#   4..15  scales[12]   8 x (6-bit scale, 6-bit min), see k_scale_min
#  16..143 qs[128]      4 chunks of 32 bytes; chunk c byte l = hi:lo
#                         lo -> e = 64c + l       (sub-block 2c)
#                         hi -> e = 64c + 32 + l  (sub-block 2c + 1)
#  per sub-block j: dl = d * sc_j, ml = dmin * m_j;  y[e] = dl * q - ml
cdef inline void dq_q4_K(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef float dmin = lv_load_f16(b + 2)
    cdef const uint8_t *qs = b + 16
    cdef int c, l, sc, mn
    cdef float d1, m1, d2, m2
    for c in range(4):
        k_scale_min(b + 4, 2 * c, &sc, &mn)
        d1 = d * <float>sc
        m1 = dmin * <float>mn
        k_scale_min(b + 4, 2 * c + 1, &sc, &mn)
        d2 = d * <float>sc
        m2 = dmin * <float>mn
        for l in range(32):
            y[64 * c + l] = d1 * <float>(qs[32 * c + l] & 0x0F) - m1
        for l in range(32):
            y[64 * c + 32 + l] = d2 * <float>(qs[32 * c + l] >> 4) - m2


# ---------------------------------------------------------------------- Q5_K
#   0..1 d   2..3 dmin   4..15 scales[12] (as Q4_K)
#  16..47  qh[32]       bit j of qh[l] = 5th bit of e = 32j + l
#  48..175 qs[128]      low nibbles, laid out as Q4_K's
#  y[e] = (d * sc_j) * (nibble | bit << 4) - dmin * m_j
cdef inline void dq_q5_K(const uint8_t *b, float *y) noexcept nogil:
    cdef float d = lv_load_f16(b)
    cdef float dmin = lv_load_f16(b + 2)
    cdef const uint8_t *qh = b + 16
    cdef const uint8_t *qs = b + 48
    cdef int c, l, sc, mn, j
    cdef float d1, m1, d2, m2
    for c in range(4):
        j = 2 * c
        k_scale_min(b + 4, j, &sc, &mn)
        d1 = d * <float>sc
        m1 = dmin * <float>mn
        k_scale_min(b + 4, j + 1, &sc, &mn)
        d2 = d * <float>sc
        m2 = dmin * <float>mn
        for l in range(32):
            y[64 * c + l] = d1 * <float>((qs[32 * c + l] & 0x0F) | (((qh[l] >> j) & 1) << 4)) - m1
        for l in range(32):
            y[64 * c + 32 + l] = d2 * <float>((qs[32 * c + l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) - m2


# ---------------------------------------------------------------------- Q6_K
#    0..127 ql[128]   low 4 bits: half h = e // 128, t = e % 64, s = (e % 128) // 64
#                       lo4 = (ql[64h + t] >> 4s) & 0xF
#  128..191 qh[64]    high 2 bits: l = e % 32, s2 = (e % 128) // 32
#                       hi2 = (qh[32h + l] >> 2*s2) & 3
#  192..207 scales int8[16]  one per 16 elements
#  208..209 d
#  y[e] = (d * scales[e // 16]) * ((lo4 | hi2 << 4) - 32)
cdef inline void dq_q6_K(const uint8_t *b, float *y) noexcept nogil:
    cdef const uint8_t *ql = b
    cdef const uint8_t *qh = b + 128
    cdef const int8_t *sc = <const int8_t *>(b + 192)
    cdef float d = lv_load_f16(b + 208)
    cdef float dl
    cdef int h, s2, g, l
    cdef const uint8_t *lo
    cdef const uint8_t *hi
    cdef float *yy
    # e = 128h + 32 s2 + l:  lo4 = ql[64h + 32 (s2 & 1) + l] >> 4 (s2 >> 1),
    #                        hi2 = qh[32h + l] >> 2 s2;  16-element groups share a scale
    for h in range(2):
        for s2 in range(4):
            lo = ql + 64 * h + 32 * (s2 & 1)
            hi = qh + 32 * h
            for g in range(2):
                dl = d * <float>sc[8 * h + 2 * s2 + g]
                yy = y + 128 * h + 32 * s2
                for l in range(16 * g, 16 * g + 16):
                    yy[l] = dl * <float>(<int>(((lo[l] >> (4 * (s2 >> 1))) & 0x0F)
                                               | (((hi[l] >> (2 * s2)) & 3) << 4)) - 32)


# ------------------------------------------------------------------ one row
cdef inline int dequant_row(int qtype, const uint8_t *src, float *dst, Py_ssize_t cols,
                            bint simd=True) noexcept nogil:
    """Dequantize one row of ``cols`` elements (a whole number of blocks) from ``src``.

    ``simd`` uses the vector Q4_K / Q6_K versions of lv_simd.h when compiled in (same
    results; False forces the scalar code, for tests).  Returns 0, or -1 when
    ``qtype`` is not supported (nothing written).
    """
    cdef Py_ssize_t i, nb
    cdef int bb = block_bytes(qtype)
    if qtype == T_F32:
        memcpy(dst, src, cols * 4)
        return 0
    if qtype == T_F16:
        if simd:
            lv_f16_row(src, dst, cols)
        else:
            for i in range(cols):
                dst[i] = lv_load_f16(src + 2 * i)
        return 0
    if bb == 0:
        return -1
    nb = cols // block_elems(qtype)
    if qtype == T_Q4_K:
        for i in range(nb):
            if not (simd and lv_dq_q4_K_simd(src + i * bb, dst + i * QK_K)):
                dq_q4_K(src + i * bb, dst + i * QK_K)
    elif qtype == T_Q6_K:
        for i in range(nb):
            if not (simd and lv_dq_q6_K_simd(src + i * bb, dst + i * QK_K)):
                dq_q6_K(src + i * bb, dst + i * QK_K)
    elif qtype == T_Q8_0:
        for i in range(nb):
            dq_q8_0(src + i * bb, dst + i * QK)
    elif qtype == T_Q5_K:
        for i in range(nb):
            dq_q5_K(src + i * bb, dst + i * QK_K)
    elif qtype == T_Q3_K:
        for i in range(nb):
            dq_q3_K(src + i * bb, dst + i * QK_K)
    elif qtype == T_Q2_K:
        for i in range(nb):
            dq_q2_K(src + i * bb, dst + i * QK_K)
    elif qtype == T_Q4_0:
        for i in range(nb):
            dq_q4_0(src + i * bb, dst + i * QK)
    elif qtype == T_Q4_1:
        for i in range(nb):
            dq_q4_1(src + i * bb, dst + i * QK)
    elif qtype == T_Q5_0:
        for i in range(nb):
            dq_q5_0(src + i * bb, dst + i * QK)
    elif qtype == T_Q5_1:
        for i in range(nb):
            dq_q5_1(src + i * bb, dst + i * QK)
    else:
        return -1
    return 0
