"""Shared fixtures: model files and reference outputs copied from ../shared/fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
NOMIC = FIXTURES / "nomic-tiny"
MINILM = FIXTURES / "minilm"
NOMIC_FILES = ["tiny-nomic-v1.5.f16.gguf", "tiny-nomic-v1.5.Q8_0.gguf", "tiny-nomic-v1.5.Q4_K_M.gguf"]
MINILM_FILE = MINILM / "all-MiniLM-L6-v2.f16.gguf"
PERF_MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "perf" / "perf-nomic-v1.5-random.Q4_K_M.gguf"


def load_golden(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    """Run a kernel test with 1 and with 2 compute threads."""
    from lodevec import kernels

    before = kernels.get_num_threads()
    kernels.set_num_threads(request.param)
    yield request.param
    kernels.set_num_threads(before)


@pytest.fixture(scope="session")
def nomic_golden() -> dict:
    return load_golden(NOMIC / "golden.json")


@pytest.fixture(scope="session")
def minilm_golden() -> dict:
    return load_golden(MINILM / "golden.json")


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random float32 unit vectors of length ``dim``."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def pytest_report_header(config):
    import lodevec

    return f"lodevec imported from {Path(lodevec.__file__).parent}"


def error_of(r, status: int, code: str, *words: str) -> dict:
    """Check an OpenAI-shaped error response (an ``httpx.Response``) and return its error object."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    for w in words:
        assert w in err["message"], err
    return err


def run_cli(argv, stdin: str = "", monkeypatch=None) -> tuple[int, str]:
    """``lodevec.cli.main(argv)`` with stdout captured (and stdin replaced if given)."""
    import io
    import sys

    from lodevec.cli import main

    out = io.StringIO()
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv, out=out), out.getvalue()


def run_together(target, argsets, timeout: float = 120) -> None:
    """Run ``target(*args, barrier)`` in one spawned process per argument tuple; the
    barrier lets them start their work at the same moment.  Fails unless all exit 0."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(argsets))
    procs = [ctx.Process(target=target, args=(*args, barrier)) for args in argsets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert [p.exitcode for p in procs] == [0] * len(procs)


@pytest.fixture(scope="session")
def encoders():
    """``encoders(path)``: one ``Encoder`` per model file for the whole run."""
    from lodevec.embedding import Encoder

    cache: dict[str, Encoder] = {}

    def get(path):
        key = str(path)
        if key not in cache:
            cache[key] = Encoder.from_gguf(path)
        return cache[key]

    return get


def child_env() -> dict:
    """This environment for a ``python -m lodevec ...`` child, with the lodevec being
    tested first on PYTHONPATH."""
    import os

    import lodevec

    src = str(Path(lodevec.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])]))


def stop_process(proc, timeout: float = 30) -> None:
    """Terminate a child process (kill it if it does not exit within ``timeout`` s)."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
