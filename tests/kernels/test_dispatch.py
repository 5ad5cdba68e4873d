"""Run-time ISA dispatch: which level runs, forcing one, refusing one the CPU lacks.

Every kernel test in this folder already runs at every supported level in-process
(isa_levels.py).  Here: the choice itself (CPU features can be hidden with
``LODEVEC_CPU_HIDE``, read at each call), the error for a bad ``LODEVEC_ISA`` on
first use, in the CLI too (subprocesses: the level is chosen once per process), and the
architecture golden checks and conformance tests at each level other than this
process's, each in a subprocess with ``LODEVEC_ISA``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lodevec import kernels
from lodevec.errors import LodevecError
from lodevec.kernels import isa, runtime

TESTS = Path(__file__).parents[1]
SUPPORTED = isa.supported_levels()
ON_X86 = isa._cpu.x86() and isa.NATIVE not in isa.built_levels()


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("LODEVEC_ISA", "LODEVEC_CPU_HIDE")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=120)


def test_kernel_info_reports_the_level_in_use():
    info = kernels.kernel_info()
    assert info["isa"] == runtime.compiled.level
    assert info["levels"] == list(SUPPORTED)
    assert info["isa"] in SUPPORTED
    assert isinstance(info["openmp"], bool) and info["threads"] >= 1
    assert info["int8"] == runtime.int8_available()


def test_default_is_the_best_supported_level(monkeypatch):
    monkeypatch.delenv("LODEVEC_ISA", raising=False)
    assert isa.choose() == SUPPORTED[-1]
    if os.environ.get("LODEVEC_ISA") is None:
        assert runtime.compiled.level == SUPPORTED[-1]


@pytest.mark.skipif(not ON_X86, reason="x86-64 dispatched build only")
def test_every_x86_level_is_built_and_this_cpu_runs_baseline():
    assert isa.built_levels() == isa.LEVELS
    assert SUPPORTED[0] == "baseline"
    assert (isa.REQUIRES["baseline"] < isa.REQUIRES["avx2"] < isa.REQUIRES["avx512"]
            < isa.REQUIRES["amx"])


@pytest.mark.skipif(not ON_X86, reason="x86-64 dispatched build only")
@pytest.mark.parametrize(("hidden", "best"), [
    ("amx_int8", "avx512"), ("amx_tile", "avx512"),
    ("avx512vnni", "avx2"), ("avx512f", "avx2"), ("avx2", "baseline"), ("f16c", "baseline"),
])
def test_a_missing_feature_drops_the_level(monkeypatch, hidden, best):
    if best not in SUPPORTED or not isa.REQUIRES[best] <= isa.cpu_features():
        pytest.skip(f"this CPU does not run {best}")
    monkeypatch.setenv("LODEVEC_CPU_HIDE", hidden)
    assert hidden not in isa.cpu_features()
    assert isa.choose() == best
    assert isa.supported_levels()[-1] == best


@pytest.mark.skipif(not ON_X86, reason="x86-64 dispatched build only")
def test_forcing_a_level_the_cpu_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LODEVEC_CPU_HIDE", "avx512f,avx512vnni")
    with pytest.raises(isa.UnsupportedISAError, match=r"LODEVEC_ISA='avx512'.*lacks "
                       r"avx512f, avx512vnni.*levels it supports: baseline, avx2$"):
        isa.choose("avx512")
    monkeypatch.setenv("LODEVEC_CPU_HIDE", "sse4_2")
    with pytest.raises(isa.UnsupportedISAError, match="lowest built level, 'baseline', needs sse4_2"):
        isa.choose()


def test_unknown_or_unbuilt_levels_are_clear_errors():
    with pytest.raises(isa.UnsupportedISAError, match=r"'avx9': unknown kernel ISA level; "
                       r"known levels: baseline, avx2, avx512, amx"):
        isa.choose("avx9")
    assert issubclass(isa.UnsupportedISAError, LodevecError)
    if isa.NATIVE not in isa.built_levels():
        with pytest.raises(isa.UnsupportedISAError, match="no kernels for that level"):
            runtime.modules(isa.NATIVE)


@pytest.mark.parametrize("level", SUPPORTED)
def test_lodevec_isa_forces_the_level(level):
    r = _run("from lodevec import kernels; print(kernels.kernel_info()['isa'])", LODEVEC_ISA=level)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == level


@pytest.mark.skipif(not ON_X86, reason="x86-64 dispatched build only")
@pytest.mark.parametrize(("env", "message"), [
    ({"LODEVEC_ISA": "avx9"}, "LODEVEC_ISA='avx9': unknown kernel ISA level"),
    ({"LODEVEC_ISA": "avx512", "LODEVEC_CPU_HIDE": "avx512bw"},
     "LODEVEC_ISA='avx512': this CPU (or its OS) lacks avx512bw"),
])
def test_a_bad_lodevec_isa_fails_on_first_use_never_with_sigill(env, message):
    code = ("from lodevec.errors import LodevecError\n"
            "import lodevec.kernels as k\n"
            "try:\n    k.kernel_info()\n"
            "except LodevecError as e:\n    print(type(e).__name__, e)\n    raise SystemExit(3)\n")
    r = _run(code, **env)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stdout.startswith("UnsupportedISAError ") and message in r.stdout


@pytest.mark.skipif(not ON_X86, reason="x86-64 dispatched build only")
def test_the_cli_reports_a_bad_lodevec_isa_as_an_error_line():
    model = TESTS / "fixtures" / "nomic-tiny" / "tiny-nomic-v1.5.Q8_0.gguf"
    r = subprocess.run([sys.executable, "-m", "lodevec", "embed", "-m", str(model),
                        "--no-cache"], input='{"text": "x"}\n', capture_output=True, text=True,
                       timeout=120, env={**os.environ, "LODEVEC_ISA": "avx512",
                                         "LODEVEC_CPU_HIDE": "avx512vnni"})
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: LODEVEC_ISA='avx512': this CPU (or its OS) lacks "
                               "avx512vnni"), r.stderr


OTHER_LEVELS = [lv for lv in SUPPORTED if lv != runtime.compiled.level]


@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_conformance_at_every_level(level):
    """The golden-vector and conformance tests, in a process running at ``level``."""
    env = {k: v for k, v in os.environ.items() if k != "LODEVEC_CPU_HIDE"}
    env["LODEVEC_ISA"] = level
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           str(TESTS / "arch"), str(TESTS / "embedding" / "test_conformance.py")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800,
                       cwd=TESTS.parent)
    assert r.returncode == 0, f"at LODEVEC_ISA={level}:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"


def test_bench_runs_each_isa_level_asked_for():
    model = TESTS / "fixtures" / "nomic-tiny" / "tiny-nomic-v1.5.Q4_K_M.gguf"
    cmd = [sys.executable, "-m", "lodevec", "bench", "-m", str(model), "--seq-len", "16",
           "--batch", "1", "--threads", "1", "--min-time", "0", "--json", "--isa", "all"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["isa"] for row in rows] == list(SUPPORTED)
    assert all(row["tokens_per_s"] > 0 for row in rows)
    bad = subprocess.run(cmd[:-1] + ["avx9"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--isa='avx9': unknown kernel ISA level" in bad.stderr
