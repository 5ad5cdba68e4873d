"""The dynamic batcher on its own: a fake embedding call, no model, no HTTP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lodevec.embedding import EmbeddingResult
from lodevec.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull


def test_batcher_slices_and_isolates_errors():
    def fn(texts, task, dim):
        if any("bad" in t for t in texts):
            raise ValueError("bad text")
        calls.append(len(texts))
        vecs = np.array([[float(t.split()[-1])] * dim for t in texts], dtype=np.float32)
        return EmbeddingResult(vecs, [len(t) for t in texts], [False] * len(texts))

    async def run():
        b = DynamicBatcher(fn, max_batch_size=8, max_wait=0.02, max_queue=200)
        await b.start()
        big = b.submit([f"t {i}" for i in range(20)], "none", 2)
        small = b.submit(["s 100"], "none", 2)
        bad = b.submit(["bad 1"], "none", 2)
        other_task = b.submit(["q 7"], "search_query", 2)
        out = await asyncio.gather(big, small, bad, other_task, return_exceptions=True)
        await b.close()
        with pytest.raises(BatcherClosed):
            await b.submit(["x 1"], "none", 2)
        # the queue bound: 429 material, except for a request arriving at an empty queue
        b = DynamicBatcher(fn, max_wait=0.2, max_queue=3)
        await b.start()
        first = asyncio.ensure_future(b.submit(["a 1", "a 2"], "none", 2))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit(["b 1", "b 2"], "none", 2)
        await first
        assert (await b.submit([f"c {i}" for i in range(5)], "none", 2)).embeddings.shape == (5, 2)
        stats = b.stats()
        await b.close()
        return out, stats

    calls: list[int] = []
    (big, small, bad, other), stats = asyncio.run(run())
    assert big.embeddings[:, 0].tolist() == list(range(20))  # reassembled in order
    assert small.embeddings[0, 0] == 100 and other.embeddings[0, 0] == 7
    assert isinstance(bad, ValueError)  # only the bad request failed
    assert max(calls) <= 8 and sum(calls) == 22 + 2 + 5
    assert stats["rejected"] == 1
