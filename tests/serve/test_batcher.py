"""The dynamic batcher on its own: a fake embedding call, no model, no HTTP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lodevec.embedding import EmbeddingResult, Tokenized
from lodevec.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull


def tokenized(texts: list[str], task: str, dim: int, n_tokens: int | None = None) -> Tokenized:
    """A request as the server queues it: one id per word between [CLS] and [SEP]."""
    ids = [[101, *([7] * (n_tokens - 2 if n_tokens else len(t.split()))), 102] for t in texts]
    return Tokenized(list(texts), ids, [len(i) for i in ids], task, dim)


def test_batcher_slices_and_isolates_errors():
    def fn(tok):
        texts, dim = tok.texts, tok.dim
        if any("bad" in t for t in texts):
            raise ValueError("bad text")
        calls.append(len(texts))
        vecs = np.array([[float(t.split()[-1])] * dim for t in texts], dtype=np.float32)
        return EmbeddingResult(vecs, [len(t) for t in texts], [False] * len(texts))

    async def run():
        b = DynamicBatcher(fn, max_batch_size=8, max_wait=0.02, max_queue=200)
        await b.start()
        big = b.submit(tokenized([f"t {i}" for i in range(20)], "none", 2))
        small = b.submit(tokenized(["s 100"], "none", 2))
        bad = b.submit(tokenized(["bad 1"], "none", 2))
        other_task = b.submit(tokenized(["q 7"], "search_query", 2))
        out = await asyncio.gather(big, small, bad, other_task, return_exceptions=True)
        await b.close()
        with pytest.raises(BatcherClosed):
            await b.submit(tokenized(["x 1"], "none", 2))
        # the queue bound: 429 material, except for a request arriving at an empty queue
        b = DynamicBatcher(fn, max_wait=0.2, max_queue=3)
        await b.start()
        first = asyncio.ensure_future(b.submit(tokenized(["a 1", "a 2"], "none", 2)))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit(tokenized(["b 1", "b 2"], "none", 2))
        await first
        assert (await b.submit(tokenized([f"c {i}" for i in range(5)], "none", 2))).embeddings.shape == (5, 2)
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


def test_batcher_queues_token_ids_and_budgets_by_them():
    """The batcher hands the queued ids to the call unchanged, joined per (task, dim), and
    fills a batch up to a token budget counted from those ids."""
    seen: list[Tokenized] = []

    def fn(tok):
        seen.append(tok)
        return EmbeddingResult(np.zeros((len(tok), tok.dim), np.float32), tok.n_tokens, tok.truncated)

    async def run(n_tokens):
        seen.clear()
        b = DynamicBatcher(fn, max_batch_size=8, max_batch_tokens=10, max_wait=0.05)
        await b.start()
        parts = [tokenized([f"{w} text"], "search_query", 4, n_tokens) for w in ("one", "two", "three")]
        results = await asyncio.gather(*(b.submit(p) for p in parts))
        await b.close()
        return parts, results

    parts, results = asyncio.run(run(3))  # 3 ids each: all three fit one 10-token batch
    assert len(seen) == 1 and seen[0].texts == ["one text", "two text", "three text"]
    assert seen[0].ids == [i for p in parts for i in p.ids] and seen[0].task == "search_query"
    assert [r.n_tokens for r in results] == [[3], [3], [3]]
    asyncio.run(run(6))  # 6 ids each: one text per batch
    assert [len(t) for t in seen] == [1, 1, 1]
