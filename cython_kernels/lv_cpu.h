/*
 * lv_cpu.h - what the CPU and the OS support, for choosing a kernel ISA level at import.
 *
 * Compiled without any -m flag (cpu.pyx is the one module built for the baseline of
 * the compiler), so reading it can never raise SIGILL.  A feature counts only when
 * CPUID reports it AND the OS saves its register state (XCR0 via XGETBV): a CPU with
 * AVX-512 under an OS or hypervisor that does not enable ZMM state must not run
 * AVX-512 code.  AMX tiles additionally need Linux's per-process permission
 * (arch_prctl ARCH_REQ_XCOMP_PERM); that is requested by the AMX level when it exists.
 */
#ifndef LV_CPU_H
#define LV_CPU_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LV_CPU_X86 1
#else
#define LV_CPU_X86 0
#endif

/* Feature bits of lv_cpu_features(); names in cpu.pyx (_NAMES) follow this order. */
enum {
    LV_CPU_SSSE3, LV_CPU_SSE41, LV_CPU_SSE42, LV_CPU_POPCNT,                 /* x86-64-v2 */
    LV_CPU_AVX, LV_CPU_AVX2, LV_CPU_FMA, LV_CPU_F16C, LV_CPU_BMI1, LV_CPU_BMI2,
    LV_CPU_LZCNT, LV_CPU_MOVBE,                                              /* x86-64-v3 */
    LV_CPU_AVX512F, LV_CPU_AVX512BW, LV_CPU_AVX512DQ, LV_CPU_AVX512VL,
    LV_CPU_AVX512CD, LV_CPU_AVX512VNNI,                                      /* v4 + VNNI */
    LV_CPU_AVXVNNI, LV_CPU_AMX_TILE, LV_CPU_AMX_INT8, LV_CPU_AMX_BF16,
    LV_CPU_NFEATURES
};

#if LV_CPU_X86
static inline uint64_t lv_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* Bit i set: feature i usable (CPU and OS). */
static inline uint64_t lv_cpu_features(void) {
    uint64_t f = 0;
#if LV_CPU_X86
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, 0);
    if (max_leaf < 1) return 0;
    __cpuid(1, a, b, c, d);
    unsigned c1 = c;
    if (c1 & (1u << 9)) f |= 1ull << LV_CPU_SSSE3;
    if (c1 & (1u << 19)) f |= 1ull << LV_CPU_SSE41;
    if (c1 & (1u << 20)) f |= 1ull << LV_CPU_SSE42;
    if (c1 & (1u << 23)) f |= 1ull << LV_CPU_POPCNT;
    if (c1 & (1u << 22)) f |= 1ull << LV_CPU_MOVBE;
    /* OS state: XMM|YMM (bits 1,2); opmask|ZMM_Hi256|Hi16_ZMM (5,6,7); XTILECFG|XTILEDATA (17,18) */
    uint64_t xcr0 = (c1 & (1u << 27)) ? lv_xgetbv0() : 0;   /* OSXSAVE */
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    int os_amx = (xcr0 & 0x60000) == 0x60000;
    if (os_avx && (c1 & (1u << 28))) f |= 1ull << LV_CPU_AVX;
    if (os_avx && (c1 & (1u << 12))) f |= 1ull << LV_CPU_FMA;
    if (os_avx && (c1 & (1u << 29))) f |= 1ull << LV_CPU_F16C;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 3)) f |= 1ull << LV_CPU_BMI1;
        if (b & (1u << 8)) f |= 1ull << LV_CPU_BMI2;
        if (os_avx && (b & (1u << 5))) f |= 1ull << LV_CPU_AVX2;
        if (os_avx512) {
            if (b & (1u << 16)) f |= 1ull << LV_CPU_AVX512F;
            if (b & (1u << 17)) f |= 1ull << LV_CPU_AVX512DQ;
            if (b & (1u << 28)) f |= 1ull << LV_CPU_AVX512CD;
            if (b & (1u << 30)) f |= 1ull << LV_CPU_AVX512BW;
            if (b & (1u << 31)) f |= 1ull << LV_CPU_AVX512VL;
            if (c & (1u << 11)) f |= 1ull << LV_CPU_AVX512VNNI;
        }
        if (os_amx) {
            if (d & (1u << 22)) f |= 1ull << LV_CPU_AMX_BF16;
            if (d & (1u << 24)) f |= 1ull << LV_CPU_AMX_TILE;
            if (d & (1u << 25)) f |= 1ull << LV_CPU_AMX_INT8;
        }
        unsigned leaf7_max = a;
        if (leaf7_max >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (os_avx && (a & (1u << 4))) f |= 1ull << LV_CPU_AVXVNNI;
        }
    }
    __cpuid(0x80000000, a, b, c, d);
    if (a >= 0x80000001) {
        __cpuid(0x80000001, a, b, c, d);
        if (c & (1u << 5)) f |= 1ull << LV_CPU_LZCNT;
    }
#endif
    return f;
}

/* AMX tile data needs Linux's per-process permission before the first tile
 * instruction (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): 0 when granted,
 * else the errno (or -1 where there is no such call). */
#if LV_CPU_X86 && defined(__linux__)
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
static inline int lv_cpu_request_amx(void) {
    long r = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */);
    return r == 0 ? 0 : errno;
}
#else
static inline int lv_cpu_request_amx(void) { return -1; }
#endif

#endif /* LV_CPU_H */
