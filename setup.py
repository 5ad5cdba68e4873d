"""Build the Cython kernels.

Everything about compilation lives here, in one place:

* ``LODEVEC_PORTABLE=1``  build for the baseline x86-64 (or aarch64) ISA instead of
  ``-march=native``.  Source installs default to native code because the kernels are
  bandwidth/FMA bound and gain most from AVX2+FMA; a portable wheel trades that speed
  for running on any CPU of the architecture.
* ``LODEVEC_DEBUG_KERNELS=1`` compile with ``boundscheck=True`` / ``wraparound=True``
  and ``-O0 -g`` so tests catch out-of-bounds reads inside kernels.
* ``LODEVEC_NO_OPENMP=1`` build without OpenMP (kernels then run on one thread).
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension, find_packages, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - pyproject always installs Cython
    sys.exit("lodevec needs Cython>=3 to build its kernels")

DEBUG = os.environ.get("LODEVEC_DEBUG_KERNELS") == "1"
PORTABLE = os.environ.get("LODEVEC_PORTABLE") == "1"
OPENMP = os.environ.get("LODEVEC_NO_OPENMP") != "1" and sys.platform.startswith("linux")

compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-ffp-contract=fast"]
if not PORTABLE:
    compile_args.append("-march=native")
elif platform.machine() in ("x86_64", "AMD64"):
    compile_args += ["-mavx2", "-mfma", "-mf16c"] if os.environ.get("LODEVEC_AVX2") == "1" else []
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

# Kernel modules: cython_kernels/<name>.pyx -> lodevec._kernels.<name>
KERNELS = ["quant", "matmul", "ops", "attention", "qmatmul", "vscan"]
# Per-module flags appended after compile_args (a later -f flag wins).  quant must
# not fuse ``d * q - m`` into an FMA: its output is compared bit for bit with
# gguf.quants.dequantize, which rounds the product before the subtraction.
KERNEL_FLAGS = {"quant": ["-ffp-contract=off"]}
# Shared C header and inline .pxd: a change there must rebuild every module.
KERNEL_DEPENDS = [f"cython_kernels/{f}" for f in ("lv_simd.h", "lv_q8.h", "lv_vscan.h", "dequant.pxd")]

extensions = [
    Extension(
        f"lodevec._kernels.{name}",
        [f"cython_kernels/{name}.pyx"],
        include_dirs=["cython_kernels"],
        extra_compile_args=compile_args + KERNEL_FLAGS.get(name, []),
        depends=KERNEL_DEPENDS,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
    if os.path.exists(f"cython_kernels/{name}.pyx")
]

setup(
    package_dir={"": "src", "lodevec.models": "models"},
    packages=find_packages("src") + ["lodevec.models"],
    package_data={"lodevec.models": ["*.json"], "lodevec._kernels": ["*.pxd"]},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        compile_time_env={"LODEVEC_OPENMP": OPENMP},
        include_path=["cython_kernels"],
    ),
    zip_safe=False,
)
