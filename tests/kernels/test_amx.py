"""The AMX tile matmul (amx.pyx / lv_amx.h), the ``amx`` ISA level.

The kernel is called directly here (every other kernel test already runs at the amx
level through isa_levels.py, and test_int8.py checks ``kernels.matmul`` there).  Its
error bound is the int8 path's (x quantized per row and block of 256, see
test_int8.py); it differs from the VNNI kernel only in how the exact integer sums are
grouped before they are scaled, so the two agree far inside that bound.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap

import gguf.quants
import numpy as np
import pytest
from test_kernels import random_raw

from lodevec.gguf.constants import GGMLQuantizationType
from lodevec.kernels import isa

T = GGMLQuantizationType
AMX_TYPES = [T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_0]

if "amx" not in isa.supported_levels():
    why = (isa.amx_note() or "this CPU (or its OS) has no AMX-INT8 tiles"
           if "amx" in isa.built_levels() else "this install has no amx kernels")
    pytest.skip(f"AMX tests skipped: {why}", allow_module_level=True)

amx = isa.load("amx").amx
vnni = isa.load("amx").qmatmul


def _case(qtype, n, rows, cols, seed):
    rng = np.random.default_rng(seed)
    raw = random_raw(qtype, rows, cols, rng, scale=0.05)
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 10, (n, 1))).astype(np.float32)
    x[0, :7] *= 30                                  # an outlier column in a block
    return raw, x, gguf.quants.dequantize(raw, qtype)


def _amx(x, qtype, raw, bias=None, threads=1):
    out = np.full((x.shape[0], raw.shape[0]), np.nan, dtype=np.float32)
    amx.matmul_amx(x, int(qtype), raw, x.shape[1], bias, out, threads)
    return out


def _rel_err(out, x, w_f32, bias):
    ref = x.astype(np.float64) @ w_f32.astype(np.float64).T
    if bias is not None:
        ref += bias
    scale = np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w_f32, axis=1)[None, :] + 1e-30
    return np.abs(out - ref) / scale


@pytest.mark.parametrize(("n", "rows", "cols"), [
    (1, 16, 256), (7, 45, 512), (16, 32, 768), (17, 33, 256), (33, 50, 768), (100, 16, 512),
    (1800, 20, 256),    # x in several blocks of groups per pass (X_BLOCK_BYTES), odd tail
])
@pytest.mark.parametrize("qtype", AMX_TYPES, ids=lambda t: t.name)
def test_amx_matmul_matches_the_oracle_at_any_thread_count(qtype, n, rows, cols):
    raw, x, w_f32 = _case(qtype, n, rows, cols, n * 131 + rows + int(qtype))
    bias = np.random.default_rng(n).standard_normal(rows).astype(np.float32) if n % 2 else None
    one = _amx(x, qtype, raw, bias, 1)
    two = _amx(x, qtype, raw, bias, 2)
    assert np.isfinite(one).all()                   # every element written, no padding leaks
    assert np.array_equal(one, two)                 # thread count never changes results
    err = _rel_err(one, x, w_f32, bias)
    assert err.max() < 1e-2, err.max()
    assert err.mean() < 3e-3, err.mean()
    if int(qtype) in vnni.supported_types():        # the VNNI kernel: same quantized x
        ref = np.empty_like(one)
        vnni.matmul_q8(x, int(qtype), raw, cols, bias, ref, 1)
        assert np.abs(one - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("qtype", AMX_TYPES, ids=lambda t: t.name)
def test_a_row_gets_the_same_result_alone_or_anywhere_in_a_batch(qtype):
    raw, x, _ = _case(qtype, 53, 40, 512, int(qtype))
    batch = _amx(x, qtype, raw)
    for i in (0, 15, 16, 31, 32, 52):               # first/last row of tile groups and pairs
        alone = _amx(np.ascontiguousarray(x[i:i + 1]), qtype, raw)
        assert np.array_equal(alone[0], batch[i]), i
    shuffled = np.random.default_rng(1).permutation(53)
    assert np.array_equal(_amx(np.ascontiguousarray(x[shuffled]), qtype, raw), batch[shuffled])


@pytest.mark.parametrize("qtype", AMX_TYPES, ids=lambda t: t.name)
def test_the_repacked_weight_gives_identical_bits(qtype):
    """kernels.matmul unpacks per call for one x group and reads a repacked copy above
    that: the choice by n must never change a result."""
    raw, x, _ = _case(qtype, 40, 33, 512, 7 + int(qtype))
    planes, scales = amx.repack(int(qtype), raw, 512, 2)
    assert planes.shape == (2, 48, 512) and planes.dtype == np.uint8
    assert scales.shape == (3, 2, amx.W_FLOATS) and not planes[:, 33:].any()
    for n in (1, 16, 17, 40):
        streamed = _amx(np.ascontiguousarray(x[:n]), qtype, raw, threads=2)
        packed = np.full_like(streamed, np.nan)
        amx.matmul_packed(np.ascontiguousarray(x[:n]), int(qtype), planes, scales, 33, None,
                          packed, 1)
        assert np.array_equal(streamed, packed), n
    with pytest.raises(ValueError, match=r"repacked weight has planes \(2, 48, 512\).*expected "
                                         r"\(2, 32, 512\)"):
        amx.matmul_packed(x, int(qtype), planes, scales, 20, None, np.empty((40, 20), np.float32))


def test_kernels_matmul_keeps_the_repacked_weight_with_the_tensor():
    import gc

    from lodevec import kernels
    from lodevec.gguf.tensors import QuantTensor
    from lodevec.kernels import quant, runtime

    raw, x, w_f32 = _case(T.Q4_K, 64, 40, 512, 11)
    with runtime.using("amx"):
        before = quant.amx_repacked_bytes()
        w = QuantTensor("blk.0.ffn_up.weight", T.Q4_K, 40, 512, raw)
        small = kernels.matmul(np.ascontiguousarray(x[:3]), w)     # one group: unpacked per call
        assert quant.amx_repacked_bytes() == before
        big = kernels.matmul(x, w)                                   # repacked, kept
        assert quant.amx_repacked_bytes() == before + 2 * 48 * 512 + 3 * 2 * amx.W_FLOATS * 4
        assert np.array_equal(kernels.matmul(np.ascontiguousarray(x[:3]), w), small)
        assert np.array_equal(big[:3], small)
        del w
        gc.collect()
        assert quant.amx_repacked_bytes() == before                  # freed with the tensor
    assert _rel_err(big, x, w_f32, None).max() < 1e-2


def test_zero_constant_and_nan_free_rows():
    raw, x, w_f32 = _case(T.Q4_K, 5, 20, 256, 3)
    x[1] = 0.0
    x[2] = 0.25
    out = _amx(x, T.Q4_K, raw)
    assert np.array_equal(out[1], np.zeros(20, np.float32))
    assert _rel_err(out, x, w_f32, None).max() < 1e-2


def test_the_kernel_validates_its_arguments():
    raw, x, _ = _case(T.Q4_K, 3, 16, 256, 0)
    out = np.empty((3, 16), np.float32)
    with pytest.raises(ValueError, match="unsupported GGML type id 2"):
        amx.matmul_amx(x, 2, raw, 256, None, out, 1)
    with pytest.raises(ValueError, match="need a multiple of 256"):
        amx.matmul_amx(np.zeros((3, 128), np.float32), 12, np.ascontiguousarray(raw[:, :72]), 128,
                       None, out, 1)
    with pytest.raises(ValueError, match="weight rows have 143 bytes, expected 144"):
        amx.matmul_amx(x, 12, np.ascontiguousarray(raw[:, :143]), 256, None, out, 1)
    with pytest.raises(ValueError, match=r"out has shape \(3, 15\), expected \(3, 16\)"):
        amx.matmul_amx(x, 12, raw, 256, None, np.empty((3, 15), np.float32), 1)
    with pytest.raises(ValueError, match="bias has 4 elements, expected 16"):
        amx.matmul_amx(x, 12, raw, 256, np.zeros(4, np.float32), out, 1)
    assert set(amx.supported_types()) == {int(t) for t in AMX_TYPES}


def test_a_refused_tile_permission_falls_back_to_avx512_with_a_note():
    """Linux refuses ARCH_REQ_XCOMP_PERM (ENOSPC) when a thread's signal stack is too small
    for the tile state: a real refusal, made in a child process before lodevec loads."""
    code = textwrap.dedent(f"""
        import ctypes, json
        libc = ctypes.CDLL({ctypes.util.find_library("c")!r}, use_errno=True)
        class stack_t(ctypes.Structure):
            _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                        ("ss_size", ctypes.c_size_t)]
        buf = ctypes.create_string_buffer(2048)
        assert libc.sigaltstack(ctypes.byref(stack_t(ctypes.cast(buf, ctypes.c_void_p), 0, 2048)),
                                None) == 0
        from lodevec import kernels
        from lodevec.errors import LodevecError
        from lodevec.kernels import isa
        info = kernels.kernel_info()
        try:
            isa.choose("amx")
            forced = None
        except LodevecError as e:
            forced = str(e)
        print(json.dumps({{"isa": info["isa"], "note": info.get("note"), "forced": forced}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("LODEVEC_ISA", "LODEVEC_CPU_HIDE")}
    r = subprocess.run([sys.executable, "-X", "faulthandler=0", "-c", code], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    got = json.loads(r.stdout)
    assert got["isa"] == "avx512"
    assert "refused the tile permission" in got["note"] and "errno 28" in got["note"]
    assert "lacks AMX tile permission (arch_prctl errno 28)" in got["forced"]
