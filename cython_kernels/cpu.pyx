# cython: language_level=3
"""What this CPU and its OS support (CPUID + XCR0), read once by lodevec.kernels.

Built once, without ISA flags, next to the per-level kernel packages
(``lodevec._kernels.<level>``): it is the only compiled code imported before a level
is chosen, so it must run on any CPU of the architecture.
"""

from libc.stdint cimport uint64_t

cdef extern from "lv_cpu.h" nogil:
    uint64_t lv_cpu_features()
    int lv_cpu_request_amx()
    int LV_CPU_X86

# bit order of lv_cpu_features() (the enum in lv_cpu.h)
_NAMES = ("ssse3", "sse4_1", "sse4_2", "popcnt",
          "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe",
          "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx512vnni",
          "avxvnni", "amx_tile", "amx_int8", "amx_bf16")


def x86():
    """True when compiled for x86 / x86-64 (elsewhere no feature is reported)."""
    return bool(LV_CPU_X86)


def features():
    """The usable features, as a frozenset of names (see ``_NAMES``)."""
    cdef uint64_t f = lv_cpu_features()
    return frozenset(name for i, name in enumerate(_NAMES) if f >> i & 1)


def request_amx():
    """Ask Linux for AMX tile permission (process-wide; asking again is harmless).

    Returns 0 when granted, else the errno (-1 off Linux / x86), e.g. EINVAL on a
    kernel without AMX support or EPERM when refused.
    """
    return lv_cpu_request_amx()
