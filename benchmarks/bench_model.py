"""asv benchmarks of the model forward and the cached embedding facade.

The forward uses ``../shared/perf/perf-nomic-v1.5-random.Q4_K_M.gguf`` (the full
nomic-embed-text-v1.5 shape, random weights) when it is present, at the shapes the
llama.cpp comparison uses; otherwise the tiny fixture model in tests/fixtures.
Run: ``asv run --python=same -b bench_model`` from the repo root.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    importlib.import_module("lodevec._kernels.matmul")
except ImportError:  # not installed: use the in-place build
    sys.path.insert(0, str(ROOT / "src"))

from lodevec.bench import synthetic_batch  # noqa: E402
from lodevec.embedder import Embedder, Encoder  # noqa: E402

PERF = ROOT.parent / "shared" / "perf" / "perf-nomic-v1.5-random.Q4_K_M.gguf"
TINY = ROOT / "tests" / "fixtures" / "nomic-tiny" / "tiny-nomic-v1.5.Q4_K_M.gguf"
MODEL = PERF if PERF.exists() else TINY

_encoders: dict[int, Encoder] = {}


def _encoder(threads: int) -> Encoder:
    if threads not in _encoders:
        _encoders[threads] = Encoder.from_gguf(MODEL, threads=threads)
    from lodevec import kernels

    kernels.set_num_threads(threads)
    return _encoders[threads]


class Forward:
    """One forward of ``batch`` synthetic sequences of ``seq_len`` tokens (2 threads)."""

    params = ([16, 128, 512], [1, 16])
    param_names = ["seq_len", "batch"]
    timeout = 600

    def setup(self, seq_len, batch):
        self.enc = _encoder(2)
        self.ids = synthetic_batch(self.enc, seq_len, batch)
        self.enc.backend.forward(self.ids)  # warm-up

    def time_forward(self, seq_len, batch):
        self.enc.backend.forward(self.ids)

    def track_tokens_per_s(self, seq_len, batch):
        import time

        t0 = time.perf_counter()
        self.enc.backend.forward(self.ids)
        return seq_len * batch / (time.perf_counter() - t0)

    track_tokens_per_s.unit = "tokens/s"


class Cache:
    """A cache hit against computing the embedding of a ~16-token query."""

    def setup(self):
        self.emb = Embedder(_encoder(2), cache_size=1000)
        self.text = "what is the fastest way to search my notes offline?"
        self.emb.embed(self.text, task="search_query")

    def time_cache_hit(self):
        self.emb.embed(self.text, task="search_query")

    def time_compute(self):
        self.emb.encoder.embed(self.text, task="search_query")
