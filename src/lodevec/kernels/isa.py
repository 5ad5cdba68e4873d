"""Which compiled ISA level the kernels run at, chosen once per process.

setup.py compiles every kernel module once per level into ``lodevec._kernels.<level>``;
this module reads what the CPU and OS support (``lodevec._kernels.cpu``: CPUID +
XCR0, compiled without ISA flags) and picks the best level that is both built and
supported, or the one ``LODEVEC_ISA`` names.  A level's modules are never imported on
a CPU that lacks its features: even their module init may use the level's
instructions, so importing them is what would raise SIGILL.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from .. import settings
from .._kernels import cpu as _cpu
from ..errors import LodevecError

_V2 = frozenset({"ssse3", "sse4_1", "sse4_2", "popcnt"})
_V3 = _V2 | {"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe"}
_V4_VNNI = _V3 | {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx512vnni"}
_AMX = _V4_VNNI | {"amx_tile", "amx_int8"}

#: levels lowest first, with the CPU features each needs (x86-64-v2, -v3, -v4 + VNNI,
#: and AMX tiles; ``amx`` also needs the OS's per-process tile permission).
REQUIRES: dict[str, frozenset[str]] = {
    "baseline": _V2,
    "avx2": _V3,
    "avx512": _V4_VNNI,
    "amx": _AMX,
}
LEVELS = tuple(REQUIRES)
#: ``LODEVEC_NATIVE=1`` source builds: ``-march=native``, runs on the CPU it was built on
NATIVE = "native"
#: the compiled kernel modules every level has
MODULES = ("quant", "matmul", "ops", "attention", "qmatmul", "vscan")
#: levels that build only some modules: (the level the rest come from, their own modules)
PARTIAL = {"amx": ("avx512", ("amx",))}


class UnsupportedISAError(LodevecError, RuntimeError):
    """The requested kernel ISA level is unknown, not built, or beyond this CPU."""


@dataclass(frozen=True)
class Compiled:
    """The compiled kernel modules of one ISA level."""

    level: str
    quant: ModuleType
    matmul: ModuleType
    ops: ModuleType
    attention: ModuleType
    qmatmul: ModuleType
    vscan: ModuleType
    #: the AMX tile matmul (``amx`` level only)
    amx: ModuleType | None = None

    @property
    def int8(self) -> bool:
        """Whether this level has the int8-activation matmul."""
        return bool(self.qmatmul.available())


def cpu_features() -> frozenset[str]:
    """The CPU features usable here (CPU and OS), minus ``LODEVEC_CPU_HIDE`` (tests)."""
    return _cpu.features() - settings.cpu_hide()


@functools.cache
def built_levels() -> tuple[str, ...]:
    """Levels whose compiled modules are installed, lowest first (looked up once)."""
    found = []
    for level in (*LEVELS, NATIVE):
        base, own = PARTIAL.get(level, (level, MODULES))
        try:
            ok = all(importlib.util.find_spec(f"lodevec._kernels.{level}.{m}") for m in own)
        except ImportError:
            ok = False
        if ok and (base == level or base in found):
            found.append(level)
    return tuple(found)


@functools.cache
def amx_permission() -> int:
    """Ask Linux (once per process) for AMX tile permission: 0 granted, else the errno."""
    return int(_cpu.request_amx())


def amx_note() -> str | None:
    """Why the ``amx`` level is not used although the CPU has AMX, or None."""
    if not REQUIRES["amx"] <= cpu_features() or "amx" not in built_levels():
        return None
    err = amx_permission()
    if err:
        return (f"the CPU has AMX but Linux refused the tile permission (arch_prctl "
                f"ARCH_REQ_XCOMP_PERM: errno {err}); using avx512")
    return None


def _missing(level: str, features: frozenset[str]) -> list[str]:
    if level == NATIVE or not _cpu.x86():
        return []   # native: built for this CPU; off x86 only baseline exists, no flags
    lacks = sorted(REQUIRES[level] - features)
    if level == "amx" and not lacks and amx_permission():
        # the CPU and XCR0 say yes, the kernel said no: never run a tile instruction
        lacks = [f"AMX tile permission (arch_prctl errno {amx_permission()})"]
    return lacks


def supported_levels() -> tuple[str, ...]:
    """Levels both installed and runnable on this CPU, lowest first."""
    features = cpu_features()
    return tuple(lv for lv in built_levels() if not _missing(lv, features))


def choose(requested: str | None = None, source: str = "LODEVEC_ISA") -> str:
    """The level to run: ``requested`` (from ``source``) or the best supported.

    Raises:
        UnsupportedISAError: ``requested`` is unknown, not built into this install, or
            needs features this CPU (or OS) lacks; or no built level runs here.
    """
    built = built_levels()
    features = cpu_features()
    usable = [lv for lv in built if not _missing(lv, features)]
    if requested is None:
        if usable:
            return usable[-1]
        lowest = built[0] if built else "baseline"
        raise UnsupportedISAError(
            f"no lodevec kernels run on this CPU: the lowest built level, {lowest!r}, needs "
            f"{', '.join(_missing(lowest, features)) or 'its compiled modules'}"
            f" (built levels: {', '.join(built) or 'none'})")
    where = f"{source}={requested!r}"
    if requested not in (*LEVELS, NATIVE):
        raise UnsupportedISAError(f"{where}: unknown kernel ISA level; known levels: "
                                  f"{', '.join(LEVELS)} (and {NATIVE} in LODEVEC_NATIVE=1 builds)")
    if requested not in built:
        raise UnsupportedISAError(f"{where}: this install has no kernels for that level "
                                  f"(built: {', '.join(built) or 'none'})")
    lacks = _missing(requested, features)
    if lacks:
        raise UnsupportedISAError(f"{where}: this CPU (or its OS) lacks {', '.join(lacks)}; "
                                  f"levels it supports: {', '.join(usable) or 'none'}")
    return requested


_loaded: dict[str, Compiled] = {}


def load(level: str) -> Compiled:
    """Import (once) and return the compiled modules of ``level``.

    Raises:
        UnsupportedISAError: as :func:`choose` for an explicitly requested level.
    """
    if level not in _loaded:
        choose(level, "kernel ISA level")   # never import a level's modules on a CPU that lacks it
        base, own = PARTIAL.get(level, (level, ()))
        mods = {m: importlib.import_module(f"lodevec._kernels.{base}.{m}") for m in MODULES}
        mods.update({m: importlib.import_module(f"lodevec._kernels.{level}.{m}") for m in own})
        mods["qmatmul"].configure(cpu_features())   # in-level variants (AVX-VNNI), once
        _loaded[level] = Compiled(level=level, **mods)
    return _loaded[level]
