"""Dynamic batching: texts from concurrent requests share one model forward.

A forward over many short texts costs little more than a forward over one, so a
server that runs each request on its own makes concurrent clients wait about as many
times the single latency as there are clients.  ``DynamicBatcher`` queues the
requests' token ids (``Tokenized``: prompted and tokenized once, by the server, as
TEI's queue carries ids), and as soon as the first one arrives waits a few
milliseconds (``max_wait``) for others, then runs one embedding call over up to
``max_batch_size`` texts / ``max_batch_tokens`` tokens (counted from the real ids) in a
worker thread (the kernels release the GIL, so the event loop keeps
accepting requests meanwhile).  While that forward runs, new requests pile up and
form the next batch, so under load batches fill without any waiting at all.

Two refinements of the wait: it is skipped when the server says no other request is
on its way (``arrivals``), so a lone client pays no batching delay; and after a
forward the next batch lingers a little (a fifth of the forward's time, at most
``20 * max_wait``) while fewer texts are queued than the forward held, so the
clients it just answered get into the next forward together.

Requests are grouped by ``(task, dim)`` because one call embeds with one task and one
output dimension; a batch is the group's slices joined with ``Tokenized.concat``.  Big requests are cut into slices and served round-robin with
the others, so one 2000-text request does not stall every small one behind it.

Everything except the model call runs on the event loop: no locks needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..embedding import EmbeddingResult, Tokenized
from ..errors import BatcherClosed, QueueFull
from .metrics import Histogram

__all__ = ["BatcherClosed", "DynamicBatcher", "QueueFull"]

log = logging.getLogger(__name__)

#: ``fn(tok) -> EmbeddingResult``: the embedding call one batch makes.
EmbedFn = Callable[[Tokenized], EmbeddingResult]


@dataclass(eq=False)
class _Job:
    """The texts of one request, filled in as their slices come back."""

    tok: Tokenized
    tokens: list[int]  # forward tokens per text (the batch budget)
    future: asyncio.Future
    enqueued: float
    ready: float  # when it joined (or re-joined) the back of its group: fairness key
    taken: int = 0  # texts handed to batches so far
    done: int = 0  # texts embedded so far
    embeddings: np.ndarray | None = None
    n_tokens: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)

    def fill(self, start: int, end: int, res: EmbeddingResult, off: int) -> None:
        """Texts ``start:end`` came back as rows ``off:`` of a batch's ``res``; the
        request is answered once all its texts have."""
        if self.future.done():  # the client gave up, or an earlier slice failed
            return
        n = len(self.tok)
        if self.embeddings is None:
            self.embeddings = np.empty((n, self.tok.dim), dtype=np.float32)
            self.n_tokens, self.truncated = [0] * n, [False] * n
        k = end - start
        self.embeddings[start:end] = res.embeddings[off:off + k]
        self.n_tokens[start:end] = res.n_tokens[off:off + k]
        self.truncated[start:end] = res.truncated[off:off + k]
        self.done += k
        if self.done == n:
            self.future.set_result(EmbeddingResult(self.embeddings, self.n_tokens, self.truncated))


@dataclass(eq=False)
class _Group:
    """Jobs of one (task, dim), FIFO, with the texts / tokens not yet handed out."""

    jobs: deque = field(default_factory=deque)
    items: int = 0
    tokens: int = 0


class DynamicBatcher:
    """Collect embedding requests into batched calls run in one worker thread.

    Args:
        fn: ``fn(tok) -> EmbeddingResult``, e.g. a wrapper of ``Embedder.encode_tokens``;
            called from the worker thread, one call at a time.
        max_batch_size: most texts per call.
        max_batch_tokens: most tokens per call (a single longer text still goes alone).
        max_wait: seconds to wait after the first queued text for others to join.
        max_queue: most texts waiting; ``submit`` raises ``QueueFull`` beyond it.
        arrivals: optional ``() -> int``, how many requests are on their way to
            ``submit`` (received, not yet queued).  When it says 0 and the last batch was
            no bigger than what is queued, the batch starts at once instead of waiting
            ``max_wait``: a lone client then pays no batching delay.
        name: thread-name prefix of the worker.

    Example:
        >>> b = DynamicBatcher(emb.encode_tokens)
        >>> await b.start()
        >>> res = await b.submit(emb.prepare(["hello"], "search_query"))
        >>> await b.close()
    """

    def __init__(self, fn: EmbedFn, *, max_batch_size: int = 64, max_batch_tokens: int = 8192,
                 max_wait: float = 0.003, max_queue: int = 8192,
                 arrivals: Callable[[], int] | None = None, name: str = "lodevec-embed"):
        if max_batch_size < 1 or max_batch_tokens < 1 or max_queue < 1:
            raise ValueError("max_batch_size, max_batch_tokens and max_queue must be >= 1")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._arrivals = arrivals
        self._name = name
        self._groups: dict[tuple[str, int], _Group] = {}
        self._pending = 0  # texts queued, not yet handed to a batch
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self.in_flight = 0  # texts in the running batch
        self._last_end = float("-inf")  # loop time the last batch finished
        self._last_seconds = 0.0  # how long it took
        self._last_size = 0  # and how many texts it had
        # statistics (read by /metrics)
        self.requests = 0
        self.batches = 0
        self.inputs = 0
        self.failed_batches = 0
        self.rejected = 0
        self.max_batch_seen = 0
        self.batch_sizes = Histogram((1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_tokens = Histogram((16, 64, 256, 1024, 2048, 4096, 8192, 16384))
        self.queue_wait = Histogram((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.forward_seconds = Histogram((0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    @property
    def queue_depth(self) -> int:
        """Texts waiting for a batch (not counting the one running)."""
        return self._pending

    async def start(self) -> None:
        """Start the collector task on the running loop and the worker thread."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=self._name)

    async def close(self) -> None:
        """Refuse new work, finish everything queued or running, stop the worker."""
        if self._task is None:
            return
        self._closing = True
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await self._task
        finally:
            assert self._executor is not None
            self._executor.shutdown(wait=True)

    async def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` in the worker thread, between batches (e.g. a warm-up forward)."""
        if self._executor is None:
            raise BatcherClosed("the batcher is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ submit
    async def submit(self, tok: Tokenized) -> EmbeddingResult:
        """Embed one request's texts as part of whatever batch they land in.

        Args:
            tok: the request's texts, prompted and tokenized (``Embedder.prepare``).

        Returns:
            The request's own ``EmbeddingResult``, in the order given.

        Raises:
            QueueFull: too many texts are waiting already.
            BatcherClosed: the batcher is not running.
            Exception: whatever the embedding call raised for these texts.
        """
        if self._task is None or self._closing:
            raise BatcherClosed("the embedding queue is not running (server starting or stopping)")
        if not len(tok):
            return EmbeddingResult(np.empty((0, tok.dim), dtype=np.float32), [], [])
        # a request bigger than the whole queue is still taken when the queue is empty,
        # else it could never succeed
        if self._pending and self._pending + len(tok) > self.max_queue:
            self.rejected += 1
            raise QueueFull(f"the embedding queue is full ({self._pending} texts waiting, "
                            f"at most {self.max_queue}); retry later")
        loop = asyncio.get_running_loop()
        now = loop.time()
        job = _Job(tok, [max(1, n) for n in tok.n_tokens], loop.create_future(), now, now)
        group = self._groups.setdefault((tok.task, tok.dim), _Group())
        group.jobs.append(job)
        group.items += len(tok)
        group.tokens += sum(job.tokens)
        self._pending += len(tok)
        self.requests += 1
        assert self._wakeup is not None
        self._wakeup.set()
        return await job.future

    # ------------------------------------------------------------------ collector
    async def _collect(self) -> None:
        try:
            await self._collect_loop()
        except BaseException as exc:
            # a bug here must not leave clients waiting forever
            log.exception("embedding batcher stopped")
            self._closing = True
            for group in self._groups.values():
                for job in group.jobs:
                    if not job.future.done():
                        job.future.set_exception(BatcherClosed(f"the embedding queue failed: {exc!r}"))
            self._groups.clear()
            self._pending = 0
            if not isinstance(exc, Exception):
                raise

    async def _collect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            self._drop_finished()
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key, group = self._next_group()
            # Wait for company, unless the batch is full: until max_wait after the first
            # text arrived, and after a forward for a linger (a fraction of its time) while
            # fewer texts are queued than it held -- the clients it answered tend to send
            # their next request at once, and without the linger closed-loop clients
            # split into two cohorts that never share a forward (docs/performance.md,
            # "Server").  A lone client is never
            # held up by the linger: its one text is as many as the last batch had.
            linger = min(max(self.max_wait, 0.2 * self._last_seconds), 20 * self.max_wait)
            first_deadline = group.jobs[0].ready + self.max_wait
            linger_deadline = self._last_end + linger
            while not self._closing and not self._full(group):
                now = loop.time()
                if group.items >= self._last_size:
                    if self._arrivals is not None and self._arrivals() <= 0:
                        break  # nobody else is on the way: waiting only adds latency
                    deadline = first_deadline
                else:
                    deadline = max(first_deadline, linger_deadline)
                if now >= deadline:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), deadline - now)
                except asyncio.TimeoutError:
                    break
            batch = self._take(group)
            if not group.jobs:
                del self._groups[key]
            if batch:
                await self._run(batch)

    def _full(self, group: _Group) -> bool:
        return group.items >= self.max_batch_size or group.tokens >= self.max_batch_tokens

    def _next_group(self) -> tuple[tuple[str, int], _Group]:
        """The group whose first job has waited longest."""
        return min(self._groups.items(), key=lambda kv: kv[1].jobs[0].ready)

    def _drop_finished(self) -> None:
        """Forget queued jobs whose client gave up (cancelled) or that failed already."""
        for key in list(self._groups):
            group = self._groups[key]
            for job in [j for j in group.jobs if j.future.done()]:
                group.jobs.remove(job)
                rest = len(job.tok) - job.taken
                group.items -= rest
                group.tokens -= sum(job.tokens[job.taken:])
                self._pending -= rest
            if not group.jobs:
                del self._groups[key]

    def _take(self, group: _Group) -> list[tuple[_Job, int, int]]:
        """Slices ``(job, start, end)`` filling one batch, oldest jobs first."""
        batch: list[tuple[_Job, int, int]] = []
        n = tokens = 0
        while group.jobs and n < self.max_batch_size:
            job = group.jobs[0]
            start = end = job.taken
            while end < len(job.tok) and n < self.max_batch_size:
                t = job.tokens[end]
                if n and tokens + t > self.max_batch_tokens:
                    break
                n += 1
                tokens += t
                end += 1
            if end == start:
                break  # budget reached
            batch.append((job, start, end))
            job.taken = end
            group.items -= end - start
            group.tokens -= sum(job.tokens[start:end])
            self._pending -= end - start
            group.jobs.popleft()
            if job.taken < len(job.tok):
                # the rest of a big job goes to the back: other requests get a turn
                job.ready = asyncio.get_running_loop().time()
                group.jobs.append(job)
                break
        return batch

    async def _run(self, batch: list[tuple[_Job, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        part = Tokenized.concat([job.tok.select(range(s, e)) for job, s, e in batch])
        now = loop.time()
        for job, s, _ in batch:
            if s == 0:
                self.queue_wait.observe(now - job.enqueued)
        self.in_flight = len(part)
        t0 = time.perf_counter()
        try:
            res = await loop.run_in_executor(self._executor, self.fn, part)
        except Exception as exc:  # noqa: BLE001 - the error belongs to the requests
            self.failed_batches += 1
            if len({id(job) for job, _, _ in batch}) > 1:
                # one bad request must not fail its neighbours: retry each on its own
                for part in batch:
                    await self._run([part])
                return
            job = batch[0][0]
            if not job.future.done():
                job.future.set_exception(exc)
            return
        finally:
            self.in_flight = 0
            self._last_end = loop.time()
        self._last_seconds = time.perf_counter() - t0
        self._last_size = len(part)
        self.forward_seconds.observe(self._last_seconds)
        self.batches += 1
        self.inputs += len(part)
        self.max_batch_seen = max(self.max_batch_seen, len(part))
        self.batch_sizes.observe(len(part))
        self.batch_tokens.observe(sum(n for job, s, e in batch for n in job.tokens[s:e]))
        off = 0
        for job, s, e in batch:
            job.fill(s, e, res, off)
            off += e - s

    def stats(self) -> dict:
        """Counters for tests and ``/info``."""
        return {"requests": self.requests, "batches": self.batches, "inputs": self.inputs,
                "max_batch_size": self.max_batch_seen, "failed_batches": self.failed_batches,
                "rejected": self.rejected, "queue_depth": self._pending, "in_flight": self.in_flight,
                "mean_batch_size": self.inputs / self.batches if self.batches else 0.0}
