"""The state behind the app: embedder, batcher, collection, writer thread, metrics.

``Service`` owns the lifecycle (start the batcher, open the collection, warm up; on
shutdown drain the batcher and wait for store writes) and the two ways work leaves the
event loop: texts go to the batcher, store writes to the single writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..embedding import Embedder, EmbeddingResult, Tokenized
from .batcher import DynamicBatcher
from .errors import InputTooLong, NoCollection, TooManyTokens
from .limits import Limits
from .metrics import HttpMetrics
from .schemas import Rules
from .security import Security

__all__ = ["Service", "arrived", "arriving"]

log = logging.getLogger("lodevec.server")


class Service:
    """State behind the app.

    Args:
        embedder: the embedder every route uses (its cache is shared).
        db_uri: LanceDB directory / URI, or ``None`` for embeddings only.
        collection: the collection searched and written.
        dim: dimension of a new collection (``None``: the model's full size).
        limits: request limits and batching settings.
        security: API keys and the other access rules.

    Attributes:
        phase: ``starting``, ``ready``, ``stopping``, ``stopped`` or ``failed``.
        collection: the open collection, ``None`` without a database (or before startup).
        arriving: embedding requests received and not yet queued (see ``arriving()``).
    """

    def __init__(self, embedder: Embedder, db_uri: str | None, collection: str,
                 dim: int | None, limits: Limits, security: Security | None = None):
        self.embedder = embedder
        self.security = security or Security()
        self.model_name = embedder.model_name
        self.max_tokens = embedder.max_tokens
        self.db_uri = None if db_uri is None else str(db_uri)
        self.collection_name = collection
        self.dim = embedder.check_dim(dim)
        self.requested_dim = dim
        self.limits = limits
        self.truncate_default = embedder.truncate if limits.truncate is None else limits.truncate
        self.rules = Rules(max_inputs=limits.max_inputs, max_k=limits.max_k,
                           allow_empty=embedder.allow_empty, truncate=self.truncate_default,
                           check_dim=embedder.check_dim)
        self.metrics = HttpMetrics()
        self.phase = "starting"
        self.collection = None
        self.startup_error: BaseException | None = None
        # the batcher's call (worker thread): the cache, then one forward of the misses
        self.batcher = DynamicBatcher(
            functools.partial(embedder.encode_tokens, batch_size=limits.max_batch_size),
            max_batch_size=limits.max_batch_size,
            max_batch_tokens=limits.max_batch_tokens or embedder.max_batch_tokens,
            max_wait=limits.max_wait_ms / 1000, max_queue=limits.max_queue,
            arrivals=lambda: self.arriving)
        self.arriving = 0
        # one writer thread: upserts and deletes are serialised, and shutdown can wait
        # for the ones still running
        self._writer: ThreadPoolExecutor | None = None
        self.pending_writes = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        try:
            await self.batcher.start()
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lodevec-store")
            if self.db_uri is not None and self.collection is None:
                await run_in_threadpool(self.open_store)
            # the first forward pays one-off costs (weights paged in, thread pools
            # started): pay them now rather than in the first client's latency
            await self.batcher.call(self.embedder.warm_up)
        except BaseException as exc:
            self.startup_error = exc
            self.phase = "failed"
            log.error("server startup failed: %s", exc)
            await self.batcher.close()
            if self._writer is not None:
                self._writer.shutdown(wait=False)
            raise
        self.phase = "ready"

    def open_store(self) -> None:
        """Open (or create) the collection; ``serve`` calls it before uvicorn starts so a
        model mismatch is reported as the error it is, not as a failed ASGI lifespan."""
        self.collection = self._open_collection()
        self.dim = self.collection.dim
        # searches are served from memory once this background load is done (LanceDB until then)
        self.collection.load_resident(wait=False)

    def _open_collection(self):
        """The one place the server opens its collection (the same model keeps the
        table's dimension; another model is a ``ModelMismatchError``)."""
        from ..session import collection_for
        from ..store import Database

        return collection_for(Database(self.db_uri), self.collection_name, self.embedder,
                              dim=self.requested_dim, create=True)

    def begin_shutdown(self) -> None:
        """Refuse new requests (503) while in-flight ones finish."""
        if self.phase == "ready":
            self.phase = "stopping"

    async def shutdown(self) -> None:
        self.begin_shutdown()
        self.phase = "stopping"
        try:
            await self.batcher.close()  # finishes every queued text
        finally:
            if self._writer is not None:
                # writes still running (e.g. of requests cancelled by a timeout) complete
                await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown, True)
            self.phase = "stopped"

    def require_collection(self):
        if self.collection is None:
            raise NoCollection("this server has no database; start it with --db DIR")
        return self.collection

    # ------------------------------------------------------------------ embedding
    async def embed(self, texts: list[str], task: str, dim: int, truncate: bool,
                    what: str = "input") -> EmbeddingResult:
        """Prompt and tokenize once, check the token limits, embed through the batcher.

        Raises:
            InputTooLong: a text is over the model's maximum and may not be truncated.
            TooManyTokens: the request is over ``Limits.max_request_tokens``.
            QueueFull, BatcherClosed: from the batcher.
        """
        if sum(len(t) for t in texts) < 8192:
            tok = self.embedder.prepare(texts, task, dim)
        else:  # tokenizing megabytes would stall the event loop
            tok = await run_in_threadpool(self.embedder.prepare, texts, task, dim)
        self._check_tokens(tok, truncate, what)
        arrived()
        res = await self.batcher.submit(tok)
        self.metrics.tokens += sum(res.n_tokens)
        self.metrics.texts += len(texts)
        return res

    def _check_tokens(self, tok: Tokenized, truncate: bool, what: str) -> None:
        max_tokens = self.max_tokens
        if not (truncate and self.embedder.truncate):
            hint = "send \"truncate\": true" if self.embedder.truncate else "this server does not truncate"
            for i, n in enumerate(tok.n_original):
                if n > max_tokens:
                    raise InputTooLong(
                        f"{what}[{i}] has {n} tokens, more than the model's maximum of {max_tokens}; "
                        f"shorten it or {hint}", what)
        total = sum(tok.n_tokens)  # after truncation
        if total > self.limits.max_request_tokens:
            raise TooManyTokens(f"the request has {total} tokens; at most "
                                f"{self.limits.max_request_tokens} per request", what)

    # ------------------------------------------------------------------ store writes
    async def write(self, fn: Callable, *args) -> Any:
        """Run a store write on the writer thread."""
        assert self._writer is not None
        self.pending_writes += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        finally:
            self.pending_writes -= 1


# ------------------------------------------------------------------ arrivals
class _Arrival:
    """Counts a request that will embed something in ``Service.arriving`` until it is
    queued (or fails before), so the batcher knows whether to wait for company."""

    def __init__(self, svc: Service):
        self.svc = svc
        self.open = True
        svc.arriving += 1

    def close(self) -> None:
        if self.open:
            self.open = False
            self.svc.arriving -= 1


_ARRIVAL: contextvars.ContextVar[_Arrival] = contextvars.ContextVar("lodevec_arrival")


def arrived() -> None:
    """The current request has queued its texts (or has none to queue)."""
    arrival = _ARRIVAL.get(None)
    if arrival is not None:
        arrival.close()


@contextlib.contextmanager
def arriving(svc: Service) -> Iterator[None]:
    """``with arriving(svc):`` around a request that embeds: counted until it is queued."""
    arrival = _Arrival(svc)
    token = _ARRIVAL.set(arrival)
    try:
        yield
    finally:
        arrival.close()
        _ARRIVAL.reset(token)
