"""``lodevec bench``: time the model forward on synthetic token ids."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

from ..embedding.embedder import Encoder


def synthetic_batch(encoder: Encoder, seq_len: int, batch: int, seed: int = 0) -> list[list[int]]:
    """``batch`` sequences of ``seq_len`` ids: [CLS], random ordinary tokens, [SEP]."""
    rng = np.random.default_rng(seed)
    cls_id, sep_id = encoder.tokenizer.cls_id, encoder.tokenizer.sep_id
    # ids above the control/unused block of BERT vocabularies are ordinary word pieces
    lo, hi = min(1000, encoder.config.vocab_size - 1), encoder.config.vocab_size
    return [[cls_id, *rng.integers(lo, hi, size=seq_len - 2).tolist(), sep_id] for _ in range(batch)]


def run_model_bench(encoder: Encoder, seq_lens: Sequence[int], batches: Sequence[int],
                    min_time: float = 2.0, min_repeats: int = 3, warmup: int = 1,
                    levels: Sequence[str] | None = None) -> Iterator[dict]:
    """Time ``backend.forward`` per (seq_len, batch) shape, at each ISA level asked for.

    Each shape gets ``warmup`` untimed forwards, then at least ``min_repeats`` timed ones
    and at least ``min_time`` seconds; the median is reported.  ``levels`` (default: the
    level in use) are run one after the other in this process (``runtime.using``).

    Yields:
        ``{"isa", "seq_len", "batch", "tokens_per_s", "ms_per_batch", "repeats",
        "threads"}``.

    Raises:
        UnsupportedISAError: a level in ``levels`` is unknown, not built, or beyond this CPU.
    """
    from ..kernels import isa, runtime

    if not levels:
        yield from _bench_level(encoder, seq_lens, batches, min_time, min_repeats, warmup)
        return
    for level in levels:
        isa.choose(level, "bench --isa")
    for level in levels:
        with runtime.using(level):
            yield from _bench_level(encoder, seq_lens, batches, min_time, min_repeats, warmup)


def _bench_level(encoder: Encoder, seq_lens: Sequence[int], batches: Sequence[int],
                 min_time: float, min_repeats: int, warmup: int) -> Iterator[dict]:
    from .. import kernels
    from ..kernels import runtime

    level = runtime.current().level
    for seq_len in seq_lens:
        if not 2 <= seq_len <= encoder.max_tokens:
            raise ValueError(f"seq_len {seq_len} must be in 2..{encoder.max_tokens}")
        for b in batches:
            if b < 1:
                raise ValueError(f"batch {b} must be >= 1")
            ids = synthetic_batch(encoder, seq_len, b)
            for _ in range(warmup):
                encoder.backend.forward(ids)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < min_repeats or time.perf_counter() - start < min_time:
                t0 = time.perf_counter()
                encoder.backend.forward(ids)
                times.append(time.perf_counter() - t0)
                if len(times) >= 1000:
                    break
            med = float(np.median(times))
            yield {"isa": level, "seq_len": seq_len, "batch": b, "tokens_per_s": round(seq_len * b / med, 1),
                   "ms_per_batch": round(med * 1e3, 3), "repeats": len(times),
                   "threads": kernels.get_num_threads()}
