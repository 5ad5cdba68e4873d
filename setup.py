"""Build the Cython kernels.

Everything about compilation lives here, in one place.  The kernels are compiled once
per ISA level, each level into its own package of extension modules::

    lodevec/_kernels/cpu.*.so              CPUID + XCR0 probe, no ISA flags (any CPU)
    lodevec/_kernels/baseline/<kernel>.so  -march=x86-64-v2
    lodevec/_kernels/avx2/<kernel>.so      -march=x86-64-v3 (AVX2, FMA, F16C, BMI2)
    lodevec/_kernels/avx512/<kernel>.so    -march=x86-64-v4 + VNNI (F/BW/DQ/VL/CD)
    lodevec/_kernels/amx/amx.so            the AVX-512 flags + AMX tiles: the one AMX
                                           kernel (every other kernel of that level is
                                           the avx512 one)

and ``lodevec.kernels`` imports the best level the CPU and OS support (``LODEVEC_ISA``
forces a lower one).  One wheel therefore runs at full speed on every x86-64 CPU
without a compiler on the user's machine.  Off x86-64 only ``baseline`` is built, with
the compiler's default flags.

* ``LODEVEC_NATIVE=1``  build one level, ``native``, with ``-march=native`` (a source
  install for this machine only; the wheel it makes may not run on another CPU).
* ``LODEVEC_BUILD_LEVELS=baseline,avx2``  build only these levels (quicker local builds).
* ``LODEVEC_DEBUG_KERNELS=1`` compile with ``boundscheck=True`` / ``wraparound=True``
  and ``-O0 -g`` so tests catch out-of-bounds reads inside kernels.
* ``LODEVEC_NO_OPENMP=1`` build without OpenMP (kernels then run on one thread).

Extensions build in parallel (``build_ext`` defaults to one job per CPU).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - pyproject always installs Cython
    sys.exit("lodevec needs Cython>=3 to build its kernels")

DEBUG = os.environ.get("LODEVEC_DEBUG_KERNELS") == "1"
NATIVE = os.environ.get("LODEVEC_NATIVE") == "1"
OPENMP = os.environ.get("LODEVEC_NO_OPENMP") != "1" and sys.platform.startswith("linux")
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# ISA levels, lowest first (lodevec/kernels/isa.py holds the matching CPU requirements;
# an "amx" level would be the next entry).
if NATIVE:
    LEVELS = {"native": ["-march=native"]}
elif X86_64:
    LEVELS = {
        "baseline": ["-march=x86-64-v2", "-mtune=generic"],
        "avx2": ["-march=x86-64-v3", "-mtune=generic"],
        "avx512": ["-march=x86-64-v4", "-mavx512vnni", "-mtune=generic"],
        "amx": ["-march=x86-64-v4", "-mavx512vnni", "-mamx-tile", "-mamx-int8", "-mtune=generic"],
    }
else:
    LEVELS = {"baseline": []}


def _compiler_takes(flags: list[str]) -> bool:
    """Whether the C compiler accepts ``flags`` (an older gcc/clang has no -mamx-*)."""
    import subprocess
    import sysconfig

    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    try:
        r = subprocess.run([*cc, *flags, "-x", "c", "-c", "-", "-o", os.devnull],
                           input=b"int main(void) { return 0; }\n", capture_output=True,
                           timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


if "amx" in LEVELS and not _compiler_takes(LEVELS["amx"]):
    print("lodevec: the C compiler does not take the AMX flags; building without the amx "
          "level (the avx512 level serves AMX CPUs)", file=sys.stderr)
    del LEVELS["amx"]
_only = [s.strip() for s in os.environ.get("LODEVEC_BUILD_LEVELS", "").split(",") if s.strip()]
if _only:
    unknown = sorted(set(_only) - set(LEVELS))
    if unknown:
        sys.exit(f"LODEVEC_BUILD_LEVELS: unknown level(s) {unknown}; known: {list(LEVELS)}")
    LEVELS = {k: v for k, v in LEVELS.items() if k in _only}

compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-ffp-contract=fast"]
link_args: list[str] = []
if OPENMP:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

# Kernel modules: cython_kernels/<name>.pyx -> lodevec._kernels.<level>.<name>
KERNELS = ["quant", "matmul", "ops", "attention", "qmatmul", "vscan"]
# Levels that build only some kernels (the rest come from the level below them).
LEVEL_KERNELS = {"amx": ["amx"]}
# Per-module flags appended after compile_args (a later -f flag wins).  quant must
# not fuse ``d * q - m`` into an FMA: its output is compared bit for bit with
# gguf.quants.dequantize, which rounds the product before the subtraction.
KERNEL_FLAGS = {"quant": ["-ffp-contract=off"]}
# Shared C header and inline .pxd: a change there must rebuild every module.
KERNEL_DEPENDS = [f"cython_kernels/{f}" for f in ("lv_simd.h", "lv_q8.h", "lv_q8_avx2.h",
                                                  "lv_vscan.h", "lv_amx.h", "dequant.pxd")]
KERNEL_DEPENDS = [f for f in KERNEL_DEPENDS if os.path.exists(f)]
# Cython writes <source>.c next to its source, so every level compiles its own copy of
# each .pyx (copied only when changed, keeping incremental builds incremental).
LEVEL_SRC = os.path.join("build", "lodevec-levels")


def _level_source(level: str, name: str) -> str:
    src = f"cython_kernels/{name}.pyx"
    dst = os.path.join(LEVEL_SRC, level, f"{name}.pyx")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f:
        text = f.read()
    if not os.path.exists(dst) or open(dst, "rb").read() != text:
        with open(dst, "wb") as f:
            f.write(text)
        shutil.copystat(src, dst)
    return dst


extensions = [
    # the CPU probe: default flags only, so it runs on every CPU of the architecture
    Extension("lodevec._kernels.cpu", ["cython_kernels/cpu.pyx"], include_dirs=["cython_kernels"],
              extra_compile_args=["-O2"], depends=["cython_kernels/lv_cpu.h"]),
]
extensions += [
    Extension(
        f"lodevec._kernels.{level}.{name}",
        [_level_source(level, name)],
        include_dirs=["cython_kernels"],
        extra_compile_args=compile_args + flags + KERNEL_FLAGS.get(name, []),
        depends=KERNEL_DEPENDS,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for level, flags in LEVELS.items()
    for name in LEVEL_KERNELS.get(level, KERNELS)
    if os.path.exists(f"cython_kernels/{name}.pyx")
]


class ParallelBuildExt(build_ext):
    """``build_ext`` compiling one extension per CPU unless ``-j`` says otherwise."""

    def finalize_options(self):
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        super().finalize_options()


setup(
    package_dir={"": "src", "lodevec.models": "models"},
    packages=find_packages("src") + ["lodevec.models"],
    package_data={"lodevec.models": ["*.json"]},
    cmdclass={"build_ext": ParallelBuildExt},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        compile_time_env={"LODEVEC_OPENMP": OPENMP},
        include_path=["cython_kernels"],
        nthreads=os.cpu_count() or 1,
    ),
    zip_safe=False,
)
