"""The AVX2 level's two int8 dot loops: VPMADDUBSW + VPMADDWD, and AVX-VNNI's VPDPBUSD
on ymm where the CPU has it (chosen once, when the level loads: qmatmul.configure).
Both must give the same bits, so a text embeds identically on either kind of CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_int8 import INT8_TYPES
from test_kernels import random_raw

from conftest import NOMIC, child_env
from lodevec import kernels
from lodevec.gguf.tensors import QuantTensor
from lodevec.kernels import isa, runtime

HAS_VNNI = "avxvnni" in isa.cpu_features() and "avx2" in isa.supported_levels()
needs_vnni = pytest.mark.skipif(not HAS_VNNI, reason="this CPU (or install) lacks AVX-VNNI or the avx2 level")


@pytest.fixture
def avx2():
    with runtime.using("avx2") as compiled:
        before = kernels.get_matmul_mode()
        kernels.set_matmul_mode("auto")
        yield compiled
        kernels.set_matmul_mode(before)
        compiled.qmatmul.configure(isa.cpu_features())


@needs_vnni
def test_the_avx2_level_uses_avxvnni_where_the_cpu_has_it(avx2):
    assert avx2.qmatmul.dot_variant() == "avxvnni"
    avx2.qmatmul.configure(isa.cpu_features() - {"avxvnni"})
    assert avx2.qmatmul.dot_variant() == "avx2"
    if "avx512" in isa.supported_levels():
        assert runtime.modules("avx512").qmatmul.dot_variant() == "avx512vnni"
    assert runtime.modules("baseline").qmatmul.dot_variant() == "none"


@needs_vnni
@pytest.mark.parametrize("qtype", INT8_TYPES, ids=lambda t: t.name)
def test_both_avx2_dot_loops_give_the_same_bits(avx2, qtype):
    rng = np.random.default_rng(int(qtype))
    for rows, n, cols in ((97, 1, 256), (33, 7, 768), (5, 150, 512)):
        raw = random_raw(qtype, rows, cols, rng, scale=0.05)
        w = QuantTensor("w", qtype, rows, cols, raw)
        x = rng.standard_normal((n, cols)).astype(np.float32)
        x[0, :5] *= 40                         # large activations: the int16 pair sums' worst case
        bias = rng.standard_normal(rows).astype(np.float32)
        avx2.qmatmul.configure(isa.cpu_features())
        vnni = kernels.matmul(x, w, bias, threads=2)
        avx2.qmatmul.configure(isa.cpu_features() - {"avxvnni"})
        plain = kernels.matmul(x, w, bias, threads=1)
        assert np.array_equal(vnni, plain), (rows, n, cols)


@needs_vnni
def test_a_text_embeds_the_same_with_avxvnni_hidden():
    """Two processes at LODEVEC_ISA=avx2, one with AVX-VNNI hidden: the same vectors,
    alone and in a batch."""
    code = ("import json, sys\n"
            "from lodevec import kernels\n"
            "from lodevec.embedding import Encoder\n"
            f"enc = Encoder.from_gguf({str(NOMIC / 'tiny-nomic-v1.5.Q4_K_M.gguf')!r})\n"
            "texts = ['what is the capital of France?', 'a longer text about rust ' * 9, 'x']\n"
            "batch = enc.embed(texts)\n"
            "alone = [enc.embed(t).tolist() for t in texts]\n"
            "print(json.dumps({'dot': kernels.kernel_info()['int8_dot'], 'batch': batch.tolist(),"
            " 'alone': alone}))\n")
    got = {}
    for hide in ("", "avxvnni"):
        env = {**child_env(), "LODEVEC_ISA": "avx2", "LODEVEC_CPU_HIDE": hide}
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        got[hide] = json.loads(r.stdout)
    assert got[""]["dot"] == "avxvnni" and got["avxvnni"]["dot"] == "avx2"
    assert got[""]["batch"] == got["avxvnni"]["batch"]
    assert got[""]["alone"] == got["avxvnni"]["alone"]
    np.testing.assert_allclose(got[""]["batch"], got[""]["alone"], atol=2e-6)
