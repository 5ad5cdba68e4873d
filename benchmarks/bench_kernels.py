"""asv benchmarks of the compiled kernels on synthetic GGML blocks (no model file needed).

Run: ``asv run --python=same`` (or ``asv dev``) from the repo root.  ``track_*``
methods report GFLOP/s of the quantized matmul directly.
"""

from __future__ import annotations

import importlib
import sys
import timeit
from pathlib import Path

import numpy as np

try:
    importlib.import_module("lodevec._kernels.cpu")
except ImportError:  # not installed: use the in-place build (python setup.py build_ext --inplace)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lodevec import kernels  # noqa: E402
from lodevec.gguf.constants import BLOCK_SIZE, TYPE_SIZE, GGMLQuantizationType  # noqa: E402
from lodevec.gguf.tensors import QuantTensor  # noqa: E402

T = GGMLQuantizationType
# byte offsets of the f16 scale fields in a block (kept finite in synthetic data)
_F16_FIELDS = {T.Q4_K: (0, 2), T.Q6_K: (208,), T.Q8_0: (0,)}


def synthetic_tensor(qtype: GGMLQuantizationType, rows: int, cols: int, seed: int = 0) -> QuantTensor:
    """Random blocks with small finite f16 scales: the weight-matrix shape of a real layer."""
    rng = np.random.default_rng(seed)
    blk, size = BLOCK_SIZE[qtype], TYPE_SIZE[qtype]
    nb = cols // blk
    raw = rng.integers(0, 256, size=(rows, nb, size), dtype=np.uint8)
    for off in _F16_FIELDS[qtype]:
        vals = (rng.standard_normal((rows, nb)) * 0.01).astype(np.float16)
        raw[:, :, off:off + 2] = vals.view(np.uint8).reshape(rows, nb, 2)
    return QuantTensor(f"synthetic.{qtype.name}", qtype, rows, cols, raw.reshape(rows, nb * size))


class Dequantize:
    """Whole-tensor dequantization of a 3072 x 768 weight (ffn_up shaped)."""

    params = (["Q4_K", "Q6_K", "Q8_0"], [1, 2])
    param_names = ["qtype", "threads"]

    def setup(self, qtype, threads):
        self.t = synthetic_tensor(T[qtype], 3072, 768)
        kernels.set_num_threads(threads)
        kernels.dequantize(self.t)

    def time_dequantize(self, qtype, threads):
        kernels.dequantize(self.t)


class MatmulQ4K:
    """y = x @ W.T for Q4_K weights of the nomic-embed shapes (attn_output, ffn_up)."""

    params = (["768x768", "3072x768"], [16, 128, 2048], [1, 2])
    param_names = ["shape", "n", "threads"]
    timeout = 120

    def setup(self, shape, n, threads):
        m, k = (int(v) for v in shape.split("x"))
        self.w = synthetic_tensor(T.Q4_K, m, k)
        self.x = np.random.default_rng(1).standard_normal((n, k)).astype(np.float32)
        self.out = np.empty((n, m), np.float32)
        self.flops = 2.0 * n * m * k
        kernels.set_num_threads(threads)
        kernels.matmul(self.x, self.w, out=self.out)

    def time_matmul(self, shape, n, threads):
        kernels.matmul(self.x, self.w, out=self.out)

    def track_gflops(self, shape, n, threads):
        reps = max(1, int(2e9 // self.flops))
        best = min(timeit.repeat(lambda: kernels.matmul(self.x, self.w, out=self.out),
                                 number=reps, repeat=5)) / reps
        return self.flops / best / 1e9

    track_gflops.unit = "GFLOP/s"


class MatmulModes:
    """int8-activation (``auto``, VNNI) vs exact f32 matmul per weight type and n.

    ``MatmulQ4K`` above measures the default mode (``auto`` since the int8 path).
    """

    params = (["Q4_K", "Q6_K", "Q8_0"], ["3072x768", "768x3072"], [16, 128, 2048], [1, 2],
              ["auto", "f32"])
    param_names = ["qtype", "shape", "n", "threads", "mode"]
    timeout = 120

    def setup(self, qtype, shape, n, threads, mode):
        m, k = (int(v) for v in shape.split("x"))
        self.w = synthetic_tensor(T[qtype], m, k)
        self.x = np.random.default_rng(1).standard_normal((n, k)).astype(np.float32)
        self.out = np.empty((n, m), np.float32)
        self.flops = 2.0 * n * m * k
        self.mode_before = kernels.get_matmul_mode()
        kernels.set_matmul_mode(mode)
        kernels.set_num_threads(threads)
        kernels.matmul(self.x, self.w, out=self.out)

    def teardown(self, qtype, shape, n, threads, mode):
        kernels.set_matmul_mode(self.mode_before)

    def time_matmul(self, qtype, shape, n, threads, mode):
        kernels.matmul(self.x, self.w, out=self.out)

    def track_gflops(self, qtype, shape, n, threads, mode):
        reps = max(1, int(2e9 // self.flops))
        best = min(timeit.repeat(lambda: kernels.matmul(self.x, self.w, out=self.out),
                                 number=reps, repeat=5)) / reps
        return self.flops / best / 1e9

    track_gflops.unit = "GFLOP/s"


def _rope_tables(lengths, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-token cos/sin (N, half), positions restarting at each sequence."""
    pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.float32)
    inv = (1.0 / 1000.0 ** (np.arange(half, dtype=np.float32) / half)).astype(np.float32)
    f = np.outer(pos, inv).astype(np.float32)
    return np.cos(f), np.sin(f)


class Attention:
    """Multi-head attention with rotary embedding over an unpadded batch, nomic-embed
    shape (768 = 12 heads x 64), q/k/v taken as column slices of the fused QKV matrix."""

    params = (["16x1", "128x1", "512x1", "128x16", "512x16", "2048x1"], [1, 2])
    param_names = ["seq_x_batch", "threads"]
    timeout = 120

    def setup(self, seq_x_batch, threads):
        n, b = (int(v) for v in seq_x_batch.split("x"))
        H, self.nh = 768, 12
        lengths = [n] * b
        qkv = np.random.default_rng(2).standard_normal((n * b, 3 * H)).astype(np.float32)
        self.q, self.k, self.v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.cos, self.sin = _rope_tables(lengths, H // self.nh // 2)
        self.out = np.empty((n * b, H), np.float32)
        self.flops = 4.0 * b * n * n * H  # QK^T and PV
        kernels.set_num_threads(threads)
        self._run()

    def _run(self):
        kernels.attention(self.q, self.k, self.v, self.offsets, self.nh, self.cos, self.sin,
                          out=self.out)

    def time_attention(self, seq_x_batch, threads):
        self._run()

    def track_gflops(self, seq_x_batch, threads):
        reps = max(1, int(1e9 // self.flops))
        best = min(timeit.repeat(self._run, number=reps, repeat=5)) / reps
        return self.flops / best / 1e9

    track_gflops.unit = "GFLOP/s"


_F16_FIELDS[T.Q5_K] = (0, 2)


class MatmulISA:
    """The int8-activation matmul per ISA level: AMX tiles vs AVX-512 VNNI (and AVX2).

    A level the CPU (or OS) does not run is skipped (asv shows it as n/a).
    """

    params = (["Q4_K", "Q5_K", "Q6_K", "Q8_0"], ["2304x768", "3072x768", "768x3072"],
              [16, 128, 512, 2048], [1, 2], ["avx2", "avx512", "amx"])
    param_names = ["qtype", "shape", "n", "threads", "isa"]
    timeout = 120

    def setup(self, qtype, shape, n, threads, isa):
        from lodevec.kernels import isa as _isa
        from lodevec.kernels import runtime

        if isa not in _isa.supported_levels():
            raise NotImplementedError(f"{isa} does not run here")
        self.using = runtime.using(isa)
        self.using.__enter__()
        m, k = (int(v) for v in shape.split("x"))
        self.w = synthetic_tensor(T[qtype], m, k)
        self.x = np.random.default_rng(1).standard_normal((n, k)).astype(np.float32)
        self.out = np.empty((n, m), np.float32)
        self.flops = 2.0 * n * m * k
        kernels.set_num_threads(threads)
        kernels.matmul(self.x, self.w, out=self.out)

    def teardown(self, qtype, shape, n, threads, isa):
        self.using.__exit__(None, None, None)

    def time_matmul(self, qtype, shape, n, threads, isa):
        kernels.matmul(self.x, self.w, out=self.out)

    def track_gflops(self, qtype, shape, n, threads, isa):
        reps = max(1, int(2e9 // self.flops))
        best = min(timeit.repeat(lambda: kernels.matmul(self.x, self.w, out=self.out),
                                 number=reps, repeat=5)) / reps
        return self.flops / best / 1e9

    track_gflops.unit = "GFLOP/s"
