"""What lodevec reports about its kernels: ``lodevec info``, ``lodevec model info``,
``Encoder.info`` (``/info`` in tests/serve) name the ISA level in use, OpenMP and threads."""

from __future__ import annotations

import json
import subprocess
import sys

import lodevec
from conftest import NOMIC, child_env, run_cli
from lodevec import kernels
from lodevec.embedding import Encoder
from lodevec.kernels import isa, runtime

Q4 = str(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf")
DOTS = {"avx512vnni", "avxvnni", "avx2", "none"}


def test_lodevec_info():
    code, out = run_cli(["info"])
    info = json.loads(out)
    assert code == 0
    assert info["version"] == lodevec.__version__
    assert info["isa"] == runtime.compiled.level
    assert info["levels"] == list(isa.supported_levels()) and info["built"] == list(isa.built_levels())
    assert set(info["cpu_features"]) <= isa.cpu_features()
    assert info["int8_dot"] in DOTS and info["int8"] == (info["int8_dot"] != "none")
    assert info["openmp"] == kernels.openmp_enabled() and info["threads"] == kernels.get_num_threads()


def test_lodevec_info_follows_the_environment():
    level = isa.supported_levels()[0]
    env = {**child_env(), "LODEVEC_ISA": level, "LODEVEC_NUM_THREADS": "1",
           "LODEVEC_CPU_HIDE": "avxvnni"}
    r = subprocess.run([sys.executable, "-m", "lodevec", "info"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isa"] == level and info["threads"] == 1
    assert "avxvnni" not in info["cpu_features"]


def test_model_info_and_encoder_info_report_the_kernels():
    code, out = run_cli(["model", "info", Q4])
    assert code == 0
    k = json.loads(out)["kernels"]
    assert k["isa"] == runtime.compiled.level and k["int8_dot"] in DOTS
    assert isinstance(k["openmp"], bool) and k["threads"] >= 1
    info = Encoder.from_gguf(Q4, threads=1).info
    assert info["isa"] == runtime.compiled.level and info["int8_dot"] == k["int8_dot"]
    assert info["threads"] == 1 and info["openmp"] == k["openmp"] and info["device"] == "cpu"
