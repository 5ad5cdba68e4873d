"""Run-time state of the kernels: the ISA level, thread count, OpenMP, the matmul
arithmetic, what was compiled in.  The process defaults come from ``settings``
(``LODEVEC_ISA``, ``LODEVEC_NUM_THREADS``, ``LODEVEC_MATMUL``); every kernel also takes
``threads=`` per call, which is how a backend uses its own count without changing the
process's.

The level is chosen once, on first use (:mod:`.isa`), and ``runtime.compiled`` holds
its modules; the wrappers in ``quant`` / ``nn`` / ``vscan`` look them up there at each
call.  First use rather than import, so a bad ``LODEVEC_ISA`` is an
``UnsupportedISAError`` where callers handle lodevec errors (the CLI's ``error:``
line), not a traceback while modules import one another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .. import settings
from . import isa

_choose_lock = threading.Lock()


def current() -> isa.Compiled:
    """The compiled modules of the level in use, chosen on the first call.

    Raises:
        UnsupportedISAError: ``LODEVEC_ISA`` is unknown, not built, or beyond this CPU.
    """
    mods = globals().get("compiled")
    if mods is None:
        with _choose_lock:
            mods = globals().get("compiled")
            if mods is None:
                mods = isa.load(isa.choose(settings.isa()))
                globals()["compiled"] = mods
    return mods


def __getattr__(name: str) -> object:
    # ``runtime.compiled`` before the first choice: choose now (then it is a plain global)
    if name == "compiled":
        return current()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def modules(level: str | None = None) -> isa.Compiled:
    """The compiled modules of ``level`` (default: the one in use).

    Raises:
        UnsupportedISAError: ``level`` is unknown, not built, or beyond this CPU.
    """
    return current() if level is None else isa.load(level)


@contextmanager
def using(level: str) -> Iterator[isa.Compiled]:
    """Run the kernels at ``level`` inside the block (tests: every level in one process).

    Not thread-safe: it swaps the process's modules, so only tests use it.
    """
    before = current()
    globals()["compiled"] = isa.load(level)
    try:
        yield globals()["compiled"]
    finally:
        globals()["compiled"] = before


def _default_threads() -> int:
    n = settings.num_threads()
    if n is not None:
        return n if current().quant.openmp_enabled() else 1
    return max(1, int(current().quant.omp_max_threads()))


_lock = threading.Lock()
#: the process's thread count; None until first asked (the environment is read then)
_num_threads: int | None = None


def openmp_enabled() -> bool:
    """Whether the kernels were compiled with OpenMP (else they run on one thread).

    Returns:
        True when built with OpenMP (``LODEVEC_NO_OPENMP`` unset on Linux).
    """
    return bool(current().quant.openmp_enabled())


def set_num_threads(n: int) -> None:
    """Set the number of threads every kernel uses from now on (process-wide).

    Args:
        n: Thread count, >= 1.  Ignored (stays 1) when OpenMP is not compiled in.

    Raises:
        ValueError: ``n`` is not an integer >= 1.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: expected an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = int(n) if openmp_enabled() else 1


def get_num_threads() -> int:
    """The number of threads kernels use.

    Returns:
        The current thread count (1 without OpenMP).
    """
    global _num_threads
    if _num_threads is None:
        with _lock:
            if _num_threads is None:
                _num_threads = _default_threads()
    return _num_threads


#: CPU features that decide the level and the in-level variants (reported by kernel_info)
DISPATCH_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw",
                     "avx512dq", "avx512vl", "avx512cd", "avx512vnni", "avxvnni",
                     "amx_tile", "amx_int8", "amx_bf16")


def kernel_info() -> dict[str, object]:
    """The kernels in use: ISA level, what else is built and runs here, threads.

    Returns:
        ``{"isa": level in use ("baseline" | "avx2" | "avx512" | "amx" | "native"),
        "levels": levels built and supported here (lowest first), "built": levels
        installed, "cpu_features": the dispatch-relevant CPU features usable here
        (CPU and OS, sorted), "simd": ISA of the float micro-kernels ("avx512" |
        "avx2" | "scalar"), "int8": whether the int8-activation matmul is in,
        "int8_dot": its dot instructions ("avx512vnni" | "avxvnni" | "avx2" |
        "none"), "dot_tile": (MR, NR), "panel_tile": (NX, MW), "openmp": bool,
        "threads": int, "amx": whether the AMX tile matmul is in}``, plus ``"note"`` when
        the CPU has AMX but the OS refused the tile permission (the level then falls back
        to avx512).
    """
    mods = current()
    simd, mr, nr, nx, mw = mods.matmul.micro_kernel()
    features = isa.cpu_features()
    info = {"isa": mods.level, "levels": list(isa.supported_levels()),
            "built": list(isa.built_levels()),
            "cpu_features": [f for f in DISPATCH_FEATURES if f in features], "simd": simd,
            "int8": mods.int8, "int8_dot": mods.qmatmul.dot_variant(), "dot_tile": (mr, nr),
            "panel_tile": (nx, mw), "openmp": openmp_enabled(), "threads": get_num_threads(),
            "amx": mods.amx is not None}
    note = isa.amx_note()
    if note:
        info["note"] = note
    return info


def resolve(threads: int | None) -> int:
    """The thread count of one kernel call: ``threads`` if given, else the process's."""
    if threads is None:
        return get_num_threads()
    return int(threads) if openmp_enabled() else 1


def check_threads(threads: int | None) -> int | None:
    """Validate a per-backend thread count (None: the process default at each call).

    Raises:
        ValueError: not an integer >= 1.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return int(threads) if openmp_enabled() else 1


#: None until first asked (``LODEVEC_MATMUL`` is read then)
_matmul_mode: str | None = None


def int8_available() -> bool:
    """Whether the level in use has the int8-activation matmul."""
    return current().int8


def set_matmul_mode(mode: str) -> None:
    """Choose the matmul arithmetic (process-wide).

    Args:
        mode: ``"auto"`` (default): int8 activations with VNNI integer dot products
            on Q4_K / Q5_K / Q6_K / Q8_0 weights (K a multiple of 256), like llama.cpp;
            exact float32 for every other type.  ``"f32"``: always the exact float32
            path.  The default comes from the ``LODEVEC_MATMUL`` environment variable.

    Raises:
        ValueError: unknown mode.
    """
    global _matmul_mode
    if mode not in settings.MATMUL_MODES:
        raise ValueError(f"set_matmul_mode: expected one of {settings.MATMUL_MODES}, got {mode!r}")
    _matmul_mode = mode


def get_matmul_mode() -> str:
    """The current matmul mode, ``"auto"`` or ``"f32"``."""
    global _matmul_mode
    if _matmul_mode is None:
        _matmul_mode = settings.matmul_mode()
    return _matmul_mode
