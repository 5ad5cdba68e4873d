"""The HTTP server: OpenAI-compatible embeddings, search and document upserts.

``create_app`` builds a Starlette app over one ``Embedder`` and (optionally) one
collection of a LanceDB database; ``serve`` runs it with uvicorn.  Routes:

- ``POST /v1/embeddings``: the OpenAI embeddings API (``input``, ``model``,
  ``dimensions``, ``encoding_format``), plus ``task`` (nomic prefix, default
  ``search_document``) and ``truncate``.  Existing OpenAI / LangChain clients work
  unchanged.  Truncated inputs are listed in the ``x-lodevec-truncated`` header.
- ``POST /search``: ``{query, k, where, hybrid, exact}`` over the collection.
- ``POST /documents``, ``GET /documents/{id}``, ``DELETE /documents/{id}``.
- ``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus text format).

All texts go through one ``DynamicBatcher``, so concurrent requests share model
forwards.  Every error is a JSON body ``{"error": {"message", "type", "param",
"code"}}`` whose status comes from ``ERROR_TABLE``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import contextvars
import json
import logging
import math
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route

from .. import __version__, errors
from ..arch import TASKS
from ..embedding.embedder import Embedder, EmbeddingResult
from .batcher import BatcherClosed, DynamicBatcher, Histogram, QueueFull

__all__ = ["ERROR_TABLE", "BackgroundServer", "Limits", "create_app", "serve", "parse_addr"]

log = logging.getLogger("lodevec.server")

DEFAULT_ADDR = "127.0.0.1:8080"


# ============================================================================ limits
@dataclass(frozen=True)
class Limits:
    """Request limits and batching settings.

    Attributes:
        max_body_bytes: largest request body (413 beyond).
        max_inputs: most texts (or documents) per request (413 beyond; OpenAI's is 2048).
        max_request_tokens: most tokens per request, after truncation (413 beyond).
        max_k: largest ``k`` of ``/search``.
        truncate: default for the request field ``truncate``: cut over-long inputs to
            the model's maximum (True) or refuse them with 413 (False).  ``None``
            follows the embedder's own ``truncate`` setting.
        max_batch_size: most texts per model forward.
        max_batch_tokens: most tokens per model forward (``None``: the backend's budget).
        max_wait_ms: how long the first queued text waits for others to join its batch.
        max_queue: most texts waiting for the model; more get 429.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    max_k: int = 1000
    truncate: bool | None = None
    max_batch_size: int = 64
    max_batch_tokens: int | None = None
    max_wait_ms: float = 3.0
    max_queue: int = 8192

    def __post_init__(self):
        for name in ("max_body_bytes", "max_inputs", "max_request_tokens", "max_k",
                     "max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be in 0..1000, got {self.max_wait_ms}")


# ============================================================================ errors
class APIError(Exception):
    """An error the server raises itself; the message is shown to the client.

    Args:
        message: what went wrong and how to fix it.
        param: the request field at fault, if any.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class InvalidJSON(APIError):
    """The body is not JSON."""


class ValidationFailed(APIError):
    """A field is missing or has the wrong type or value."""


class BodyTooLarge(APIError):
    """The body is larger than ``Limits.max_body_bytes``."""


class TooManyInputs(APIError):
    """More texts or documents than ``Limits.max_inputs``."""


class TooManyTokens(APIError):
    """More tokens in the request than ``Limits.max_request_tokens``."""


class InputTooLong(APIError):
    """A text is longer than the model's maximum and truncation was refused."""


class DocumentNotFound(APIError):
    """No document has the given id."""


class NoCollection(APIError):
    """The server runs without a database."""


class Unavailable(APIError):
    """The server is starting or stopping."""


#: ``(exception class, HTTP status, OpenAI error type, code)``: the first row whose class
#: matches wins, so subclasses come before their bases.  The one place statuses are set.
ERROR_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (ClientDisconnect, 499, "invalid_request_error", "client_disconnected"),  # nobody reads it
    (InvalidJSON, 400, "invalid_request_error", "invalid_json"),
    (BodyTooLarge, 413, "invalid_request_error", "body_too_large"),
    (TooManyInputs, 413, "invalid_request_error", "too_many_inputs"),
    (TooManyTokens, 413, "invalid_request_error", "too_many_tokens"),
    (InputTooLong, 413, "invalid_request_error", "input_too_long"),
    (DocumentNotFound, 404, "not_found_error", "document_not_found"),
    (NoCollection, 404, "not_found_error", "collection_not_found"),
    (errors.CollectionNotFoundError, 404, "not_found_error", "collection_not_found"),
    (errors.ModelMismatchError, 409, "invalid_request_error", "model_mismatch"),
    (errors.QueryError, 422, "invalid_request_error", "invalid_query"),  # bad 'where' filter
    (QueueFull, 429, "rate_limit_error", "overloaded"),
    (Unavailable, 503, "server_error", "unavailable"),
    (BatcherClosed, 503, "server_error", "unavailable"),
    (errors.DimensionError, 422, "invalid_request_error", "invalid_dimensions"),
    (errors.TextError, 422, "invalid_request_error", "invalid_input"),
    (errors.RecordError, 422, "invalid_request_error", "invalid_document"),
    (ValidationFailed, 422, "invalid_request_error", "invalid_value"),
    (errors.InputError, 422, "invalid_request_error", "invalid_request"),
    (errors.StoreError, 500, "server_error", "store_error"),
    (Exception, 500, "server_error", "internal_error"),
)

#: statuses Starlette's router raises itself (unknown route, wrong method)
_HTTP_CODES = {404: ("not_found_error", "route_not_found"),
               405: ("invalid_request_error", "method_not_allowed")}


def error_response(exc: BaseException) -> Response:
    """The JSON error response for ``exc``, status from ``ERROR_TABLE``."""
    headers = {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        etype, code = _HTTP_CODES.get(status, ("invalid_request_error", f"http_{status}"))
        message = str(exc.detail)
        headers.update(exc.headers or {})
    else:
        status, etype, code = next((s, t, c) for cls, s, t, c in ERROR_TABLE if isinstance(exc, cls))
        message = str(exc) or type(exc).__name__
        if status >= 500 and not isinstance(exc, (errors.LodevecError, APIError, BatcherClosed)):
            log.error("internal error", exc_info=exc)
            message = f"internal error: {type(exc).__name__}: {message}"
    if status in (429, 503):
        headers["retry-after"] = "1"
    param = getattr(exc, "param", None)
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return _json(body, status, headers)


def _json(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(_dumps(obj), status, headers, media_type="application/json")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# ============================================================================ metrics
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Metrics:
    """Request counters and latency histograms (single event-loop thread: no locks)."""

    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.in_flight = 0
        self.tokens = 0
        self.texts = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = Histogram(_LATENCY_BUCKETS)
        hist.observe(seconds)


class _Exposition:
    """Builds Prometheus text exposition format 0.0.4."""

    def __init__(self):
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str,
               samples: list[tuple[dict, float]] | float) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        if not isinstance(samples, list):
            samples = [({}, samples)]
        for labels, value in samples:
            self.lines.append(f"{name}{self._labels(labels)} {self._num(value)}")

    def histogram(self, name: str, help_: str, hists: list[tuple[dict, Histogram]]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for labels, h in hists:
            for le, n in h.cumulative():
                self.lines.append(f"{name}_bucket{self._labels({**labels, 'le': le})} {n}")
            self.lines.append(f"{name}_sum{self._labels(labels)} {self._num(h.sum)}")
            self.lines.append(f"{name}_count{self._labels(labels)} {h.count}")

    @staticmethod
    def _labels(labels: dict) -> str:
        if not labels:
            return ""
        return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"

    @staticmethod
    def _num(v: float) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
        return repr(v) if isinstance(v, float) else str(int(v))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# ============================================================================ the service
_MISSING = object()


class _Service:
    """State and handlers behind the app: embedder, batcher, collection, metrics."""

    def __init__(self, embedder: Embedder, db_uri: str | None, collection: str,
                 dim: int | None, limits: Limits):
        self.embedder = embedder
        self.encoder = embedder.encoder
        self.db_uri = None if db_uri is None else str(db_uri)
        self.collection_name = collection
        self.dim = self.encoder.check_dim(dim)
        self.requested_dim = dim
        self.limits = limits
        self.truncate_default = embedder.truncate if limits.truncate is None else limits.truncate
        self.metrics = _Metrics()
        self.phase = "starting"
        self.collection = None
        self.startup_error: BaseException | None = None
        self.batcher = DynamicBatcher(
            self._encode, max_batch_size=limits.max_batch_size,
            max_batch_tokens=limits.max_batch_tokens or self.encoder.backend.max_batch_tokens,
            max_wait=limits.max_wait_ms / 1000, max_queue=limits.max_queue,
            arrivals=lambda: self.arriving)
        self.arriving = 0  # embedding requests received and not yet queued (see _Arrival)
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
            await self.batcher.call(self.encoder.encode, ["warm up"], "none")
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
        from ..store import Database

        db = Database(self.db_uri)
        dim = self.requested_dim
        if dim is None:
            # an existing collection keeps the dimension it was created with
            try:
                dim = (db.open(self.collection_name).identity or {}).get("dim")
            except errors.CollectionNotFoundError:
                dim = None
        return db.create_or_open(self.collection_name, identity=self.embedder.identity(dim))

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

    # ------------------------------------------------------------------ embedding
    def _encode(self, texts: list[str], task: str, dim: int) -> EmbeddingResult:
        """The batcher's call (worker thread)."""
        return self.embedder.encode(texts, task, dim, batch_size=self.limits.max_batch_size)

    def _count_tokens(self, texts: list[str], task: str) -> list[int]:
        return self.encoder.prepare(texts, task).n_original

    async def embed(self, texts: list[str], task: str, dim: int, truncate: bool,
                    what: str = "input") -> EmbeddingResult:
        """Embed through the batcher after checking the token limits."""
        if sum(len(t) for t in texts) < 8192:
            counts = self._count_tokens(texts, task)
        else:  # tokenizing megabytes would stall the event loop
            counts = await run_in_threadpool(self._count_tokens, texts, task)
        max_tokens = self.encoder.max_tokens
        if not (truncate and self.embedder.truncate):
            hint = "send \"truncate\": true" if self.embedder.truncate else "this server does not truncate"
            for i, n in enumerate(counts):
                if n > max_tokens:
                    raise InputTooLong(
                        f"{what}[{i}] has {n} tokens, more than the model's maximum of {max_tokens}; "
                        f"shorten it or {hint}", what)
        total = sum(min(n, max_tokens) for n in counts)
        if total > self.limits.max_request_tokens:
            raise TooManyTokens(f"the request has {total} tokens; at most "
                                f"{self.limits.max_request_tokens} per request", what)
        arrival = _ARRIVAL.get(None)
        if arrival is not None:
            arrival.close()
        res = await self.batcher.submit(texts, task, dim, [min(n, max_tokens) for n in counts])
        self.metrics.tokens += sum(res.n_tokens)
        self.metrics.texts += len(texts)
        return res

    # ------------------------------------------------------------------ parsing
    async def read_json(self, request: Request) -> Any:
        """The body as JSON, at most ``max_body_bytes`` (413), valid JSON (400)."""
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                declared_n = int(declared)
            except ValueError:
                raise InvalidJSON(f"invalid Content-Length header {declared!r}") from None
            if declared_n > 4 * limit:
                # too big to be worth draining: answer now (the connection is closed)
                raise BodyTooLarge(f"the request body has {declared_n} bytes; at most {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif size > 4 * limit:
                break
        if size > limit:
            # the rest was read and dropped so the client gets the answer, not a reset
            raise BodyTooLarge(f"the request body has {size}{'+' if size > 4 * limit else ''} "
                               f"bytes; at most {limit}")
        body = b"".join(chunks)
        if not body.strip():
            raise InvalidJSON("the request body is empty; send a JSON object")
        try:
            if size > 256 * 1024:
                return await run_in_threadpool(json.loads, body)
            return json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidJSON(f"the request body is not valid JSON: {exc}") from None

    @staticmethod
    def _object(body: Any, what: str) -> dict:
        if not isinstance(body, dict):
            raise ValidationFailed(f"the request body must be a JSON object ({what}), "
                                   f"not {_type_name(body)}")
        return body

    def _texts(self, value: Any, param: str = "input") -> list[str]:
        """``input``: a string or a list of strings, none empty."""
        if value is _MISSING or value is None:
            raise ValidationFailed(f"'{param}' is required: a string or an array of strings", param)
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, list):
            if not value:
                raise ValidationFailed(f"'{param}' is an empty array; send at least one text", param)
            if len(value) > self.limits.max_inputs:
                raise TooManyInputs(f"'{param}' has {len(value)} items; at most "
                                    f"{self.limits.max_inputs} per request", param)
            if any(isinstance(v, list) for v in value) or all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ValidationFailed(
                    f"'{param}' holds token ids; this server embeds text only, send strings "
                    "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))", param)
        else:
            raise ValidationFailed(f"'{param}' must be a string or an array of strings, "
                                   f"not {_type_name(value)}", param)
        for i, t in enumerate(value):
            if not isinstance(t, str):
                raise ValidationFailed(f"{param}[{i}] is {_type_name(t)}; expected a string", param)
            if not self.embedder.allow_empty and not t.strip():
                raise ValidationFailed(f"{param}[{i}] is empty; there is nothing to embed", param)
        return value

    def _dimensions(self, value: Any) -> int:
        if value is None:
            return self.encoder.dim
        try:
            return self.encoder.check_dim(value)
        except errors.DimensionError as exc:
            exc.param = "dimensions"
            raise

    @staticmethod
    def _task(value: Any, default: str) -> str:
        if value is None:
            return default
        if value not in TASKS:
            raise ValidationFailed(f"'task' must be one of {', '.join(TASKS)}; got {value!r}", "task")
        return value

    @staticmethod
    def _bool(body: dict, name: str, default: bool) -> bool:
        value = body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValidationFailed(f"'{name}' must be true or false, not {_type_name(value)}", name)
        return value

    @staticmethod
    def _int(body: dict, name: str, default: int, lo: int, hi: int) -> int:
        value = body.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationFailed(f"'{name}' must be an integer, not {_type_name(value)}", name)
        if not lo <= value <= hi:
            raise ValidationFailed(f"'{name}' must be in {lo}..{hi}, got {value}", name)
        return value

    def _require_collection(self):
        if self.collection is None:
            raise NoCollection("this server has no database; start it with --db DIR")
        return self.collection

    # ------------------------------------------------------------------ handlers
    async def embeddings(self, request: Request) -> Response:
        body = self._object(await self.read_json(request), 'with an "input" field')
        texts = self._texts(body.get("input", _MISSING))
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise ValidationFailed(f"'model' must be a string, not {_type_name(model)}", "model")
        dim = self._dimensions(body.get("dimensions"))
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise ValidationFailed(f"'encoding_format' must be float or base64, got {fmt!r}",
                                   "encoding_format")
        task = self._task(body.get("task"), "search_document")
        truncate = self._bool(body, "truncate", self.truncate_default)
        res = await self.embed(texts, task, dim, truncate)
        n_tokens = int(sum(res.n_tokens))
        out = {"object": "list", "data": None, "model": model or self.encoder.model.path.name,
               "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
        headers = {}
        cut = [i for i, t in enumerate(res.truncated) if t]
        if cut:
            headers["x-lodevec-truncated"] = ",".join(map(str, cut))
        if res.embeddings.size > 65536:  # building big JSON would stall the event loop
            payload = await run_in_threadpool(self._render_embeddings, out, res.embeddings, fmt)
        else:
            payload = self._render_embeddings(out, res.embeddings, fmt)
        return Response(payload, 200, headers, media_type="application/json")

    @staticmethod
    def _render_embeddings(out: dict, vecs: np.ndarray, fmt: str) -> bytes:
        if fmt == "base64":
            # little-endian float32 bytes, as OpenAI sends them
            le = vecs.astype("<f4", copy=False)
            items = [base64.b64encode(v.tobytes()).decode("ascii") for v in le]
        else:
            items = vecs.tolist()
        out["data"] = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
        return _dumps(out)

    async def search(self, request: Request) -> Response:
        body = self._object(await self.read_json(request), 'with a "query" field')
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValidationFailed("'query' must be a non-empty string", "query")
        k = self._int(body, "k", 10, 1, self.limits.max_k)
        where = body.get("where")
        if where is not None and (not isinstance(where, str) or not where.strip()):
            raise ValidationFailed("'where' must be a filter expression string, e.g. "
                                   "\"source = 'api'\"", "where")
        hybrid = self._bool(body, "hybrid", False)
        exact = self._bool(body, "exact", False)
        coll = self._require_collection()
        res = await self.embed([query], "search_query", coll.dim, truncate=True, what="query")
        mode = "hybrid" if hybrid else "vector"
        try:
            results = await run_in_threadpool(
                lambda: coll.search(res.embeddings[0], k=k, where=where, query_text=query,
                                    mode=mode, exact=exact))
        except errors.QueryError as exc:
            exc.param = "where" if where is not None else "query"
            raise
        except (errors.LodevecError, APIError):
            raise
        except Exception as exc:
            if where is not None:  # LanceDB's own error for a bad filter
                raise ValidationFailed(f"the search failed; check 'where': {exc}", "where") from exc
            raise
        return _json({"results": [_result_dict(r) for r in results]})

    async def upsert_documents(self, request: Request) -> Response:
        body = await self.read_json(request)
        truncate = self.truncate_default
        if isinstance(body, dict):
            if "documents" not in body:
                raise ValidationFailed("send {\"documents\": [{\"id\", \"text\", \"metadata\"?}, ...]} "
                                       "or a bare array of documents", "documents")
            truncate = self._bool(body, "truncate", truncate)
            docs = body["documents"]
        else:
            docs = body
        if not isinstance(docs, list):
            raise ValidationFailed(f"'documents' must be an array, not {_type_name(docs)}", "documents")
        if not docs:
            raise ValidationFailed("'documents' is an empty array", "documents")
        if len(docs) > self.limits.max_inputs:
            raise TooManyInputs(f"'documents' has {len(docs)} items; at most "
                                f"{self.limits.max_inputs} per request", "documents")
        coll = self._require_collection()
        records = [_document(d, i) for i, d in enumerate(docs)]
        seen: set[str] = set()
        for i, r in enumerate(records):
            if r["id"] in seen:
                raise ValidationFailed(f"documents[{i}]: id {r['id']!r} appears twice", "documents")
            seen.add(r["id"])
        texts = [r["text"] for r in records]
        res = await self.embed(texts, "search_document", coll.dim, truncate, what="documents")
        for r, vec in zip(records, res.embeddings, strict=True):
            r["embedding"] = vec
        await self.write(coll.upsert, records)
        n_tokens = int(sum(res.n_tokens))
        return _json({"upserted": len(records), "ids": [r["id"] for r in records],
                      "truncated": [r["id"] for r, t in zip(records, res.truncated, strict=True) if t],
                      "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})

    async def write(self, fn: Callable, *args) -> Any:
        """Run a store write on the writer thread."""
        assert self._writer is not None
        self.pending_writes += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        finally:
            self.pending_writes -= 1

    async def get_document(self, request: Request) -> Response:
        doc_id = request.path_params["doc_id"]
        coll = self._require_collection()
        found = await run_in_threadpool(coll.get, [doc_id])
        if not found:
            raise DocumentNotFound(f"no document has id {doc_id!r}", "id")
        return _json(_result_dict(found[0]))

    async def delete_document(self, request: Request) -> Response:
        doc_id = request.path_params["doc_id"]
        coll = self._require_collection()

        def delete() -> int:
            # on the writer thread, so no upsert slips in between the check and the delete
            if not coll.get([doc_id]):
                return 0
            coll.delete(ids=[doc_id])
            return 1

        if not await self.write(delete):
            raise DocumentNotFound(f"no document has id {doc_id!r}", "id")
        return _json({"deleted": 1, "id": doc_id})

    async def health(self, request: Request) -> Response:
        ok = self.phase == "ready"
        return _json({"status": "ok" if ok else self.phase}, 200 if ok else 503)

    async def info(self, request: Request) -> Response:
        rows = resident = None
        if self.collection is not None:
            rows = await run_in_threadpool(self.collection.count)
            resident = self.collection.resident_info()
        enc = self.encoder
        return _json({
            "model": enc.model.path.name, "architecture": enc.config.architecture,
            "dimension": self.dim, "dims": list(enc.dims), "max_tokens": enc.max_tokens,
            "tasks": list(TASKS), "collection": self.collection_name if self.collection else None,
            "db": self.db_uri, "rows": rows, "version": __version__, "status": self.phase,
            "uptime_s": round(time.time() - self.started_at, 3),
            "limits": {**asdict(self.limits), "truncate": self.truncate_default},
            "batcher": self.batcher.stats(), "cache": self.embedder.cache.stats(),
            "resident": resident})

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.render_metrics(), 200,
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    def render_metrics(self) -> str:
        m, b, ex = self.metrics, self.batcher, _Exposition()
        enc = self.encoder
        ex.metric("lodevec_info", "gauge", "Model served (value is always 1).",
                  [({"version": __version__, "model": enc.model.path.name,
                     "dimension": self.dim}, 1)])
        ex.metric("lodevec_up", "gauge", "1 when the server accepts requests.",
                  1 if self.phase == "ready" else 0)
        ex.metric("lodevec_http_requests_total", "counter", "HTTP requests by route, method and status.",
                  [({"route": r, "method": meth, "status": s}, n)
                   for (r, meth, s), n in sorted(m.requests.items())])
        ex.histogram("lodevec_http_request_duration_seconds", "HTTP request latency by route.",
                     [({"route": r}, h) for r, h in sorted(m.latency.items())])
        ex.metric("lodevec_http_requests_in_flight", "gauge", "Requests being served.", m.in_flight)
        ex.metric("lodevec_embedded_texts_total", "counter", "Texts embedded for requests.", m.texts)
        ex.metric("lodevec_embedded_tokens_total", "counter",
                  "Tokens of the texts embedded for requests.", m.tokens)
        ex.metric("lodevec_batches_total", "counter",
                  "Batched embedding calls (model forwards unless served from cache).", b.batches)
        ex.metric("lodevec_batch_inputs_total", "counter", "Texts in batched calls.", b.inputs)
        ex.metric("lodevec_batch_failures_total", "counter", "Batched calls that raised.",
                  b.failed_batches)
        ex.metric("lodevec_batch_size_max", "gauge", "Largest batch so far.", b.max_batch_seen)
        ex.histogram("lodevec_batch_size", "Texts per batched call.", [({}, b.batch_sizes)])
        ex.histogram("lodevec_batch_tokens", "Tokens per batched call.", [({}, b.batch_tokens)])
        ex.histogram("lodevec_batch_duration_seconds", "Time of one batched call.",
                     [({}, b.forward_seconds)])
        ex.histogram("lodevec_queue_wait_seconds", "Time a request waited for its first batch.",
                     [({}, b.queue_wait)])
        ex.metric("lodevec_queue_depth", "gauge", "Texts waiting for a batch.", b.queue_depth)
        ex.metric("lodevec_queue_rejected_total", "counter", "Requests refused with 429 (queue full).",
                  b.rejected)
        cache = self.embedder.cache.stats()
        ex.metric("lodevec_cache_hits_total", "counter", "Embedding cache hits.", cache["hits"])
        ex.metric("lodevec_cache_misses_total", "counter", "Embedding cache misses.", cache["misses"])
        ex.metric("lodevec_cache_entries", "gauge", "Embeddings in the cache.", cache["entries"])
        ex.metric("lodevec_store_pending_writes", "gauge", "Store writes queued or running.",
                  self.pending_writes)
        return ex.text()


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _document(d: Any, i: int) -> dict:
    """A store record from one API document (validated; no embedding yet)."""
    where = f"documents[{i}]"
    if not isinstance(d, dict):
        raise ValidationFailed(f"{where} must be an object with \"id\" and \"text\", "
                               f"not {_type_name(d)}", "documents")
    doc_id = d.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise ValidationFailed(f"{where}.id must be a non-empty string", "documents")
    text = d.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed(f"{where}.text must be a non-empty string", "documents")
    metadata = d.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValidationFailed(f"{where}.metadata must be an object, not {_type_name(metadata)}",
                               "documents")
    source = d.get("source", "api")
    if not isinstance(source, str) or not source:
        raise ValidationFailed(f"{where}.source must be a non-empty string", "documents")
    chunk = d.get("chunk", 0)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ValidationFailed(f"{where}.chunk must be an integer >= 0", "documents")
    # content_hash is left to the store, which hashes the text itself
    return {"id": doc_id, "text": text, "source": source, "chunk": chunk, "metadata": metadata}


def _result_dict(r: Any) -> dict:
    """A search result / stored record as JSON (never the vector)."""
    get = r.get if isinstance(r, dict) else (lambda k, d=None: getattr(r, k, d))
    out = {"id": get("id"), "score": get("score"), "text": get("text"), "source": get("source"),
           "chunk": get("chunk"), "metadata": get("metadata")}
    if out["score"] is None:
        del out["score"]
    else:
        out["score"] = float(out["score"])
    if isinstance(out["metadata"], str):  # stored as JSON text by some stores
        with contextlib.suppress(ValueError):
            out["metadata"] = json.loads(out["metadata"])
    if out["chunk"] is not None:
        out["chunk"] = int(out["chunk"])
    return out


# ============================================================================ ASGI glue
class _Arrival:
    """Counts a request that will embed something in ``_Service.arriving`` until it is
    queued (or fails before), so the batcher knows whether to wait for company."""

    def __init__(self, svc: _Service):
        self.svc = svc
        self.open = True
        svc.arriving += 1

    def close(self) -> None:
        if self.open:
            self.open = False
            self.svc.arriving -= 1


_ARRIVAL: contextvars.ContextVar[_Arrival] = contextvars.ContextVar("lodevec_arrival")


def _handler(fn: Callable[[Request], Awaitable[Response]],
             embeds: _Service | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Turn every exception of a handler into its JSON error response; ``embeds``: the
    handler embeds texts, count it as arriving."""

    async def endpoint(request: Request) -> Response:
        arrival = token = None
        if embeds is not None:
            arrival = _Arrival(embeds)
            token = _ARRIVAL.set(arrival)
        try:
            return await fn(request)
        except Exception as exc:  # noqa: BLE001 - mapped by ERROR_TABLE, 500 included
            return error_response(exc)
        finally:
            if arrival is not None:
                arrival.close()
                _ARRIVAL.reset(token)

    endpoint.__name__ = fn.__name__
    return endpoint


class _Observe:
    """ASGI middleware: 503 outside the ready phase, request counts and latencies."""

    _ALWAYS = ("/health", "/metrics", "/info")

    def __init__(self, app, service: _Service, routes: list[Route]):
        self.app = app
        self.service = service
        self.routes = routes

    def _route(self, scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return route.path
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        svc = self.service
        route = self._route(scope)
        status = 500
        t0 = time.perf_counter()

        async def send_observed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        svc.metrics.in_flight += 1
        try:
            if svc.phase != "ready" and route not in self._ALWAYS:
                await error_response(Unavailable(f"the server is {svc.phase}; retry later"))(
                    scope, receive, send_observed)
            else:
                await self.app(scope, receive, send_observed)
        finally:
            svc.metrics.in_flight -= 1
            svc.metrics.observe(route, scope.get("method", ""), status, time.perf_counter() - t0)


async def _http_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def create_app(embedder: Embedder, db_uri: str | None = None, collection: str = "default",
               limits: Limits | None = None, dim: int | None = None) -> Starlette:
    """Build the ASGI app.

    Args:
        embedder: the embedder every route uses (its cache is shared).
        db_uri: LanceDB directory / URI; ``None`` serves embeddings only (the document
            routes answer 404).
        collection: the collection searched and written.  Created at startup if missing.
        limits: request limits and batching settings (``Limits()`` defaults).
        dim: dimension of a new collection (default: the model's full size); an existing
            collection keeps its own.

    Returns:
        A Starlette app; the service object is at ``app.state.service``.  Startup
        (lifespan) opens the collection and starts the batcher; shutdown drains the
        batcher and waits for store writes.

    Raises:
        DimensionError: ``dim`` is not one of the model's dimensions.
    """
    svc = _Service(embedder, db_uri, collection, dim, limits or Limits())
    routes = [
        Route("/v1/embeddings", _handler(svc.embeddings, svc), methods=["POST"]),
        Route("/embeddings", _handler(svc.embeddings, svc), methods=["POST"]),
        Route("/search", _handler(svc.search, svc), methods=["POST"]),
        Route("/documents", _handler(svc.upsert_documents, svc), methods=["POST"]),
        Route("/documents/{doc_id:path}", _handler(svc.get_document), methods=["GET"]),
        Route("/documents/{doc_id:path}", _handler(svc.delete_document), methods=["DELETE"]),
        Route("/health", _handler(svc.health), methods=["GET"]),
        Route("/info", _handler(svc.info), methods=["GET"]),
        Route("/metrics", _handler(svc.metrics_page), methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await svc.startup()
        try:
            yield
        finally:
            await svc.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(_Observe, service=svc, routes=routes)],
                    exception_handlers={HTTPException: _http_error})
    app.state.service = svc
    return app


# ============================================================================ running
def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``":port"``, ``"port"``, ``"[::1]:port"``) to ``(host, port)``.

    Raises:
        InputError: not an address.
    """
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = "", addr
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.InputError(f"--addr {addr!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def _make_server(app: Starlette, config):
    """A ``uvicorn.Server`` that marks the app as stopping on SIGINT/SIGTERM, so requests
    arriving on kept-alive connections get 503 while in-flight ones finish."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.service.begin_shutdown()
            super().handle_exit(sig, frame)

    return Server(config)


def _config(app: Starlette, host: str, port: int, log_level: str, access_log: bool,
            graceful_timeout: float):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                          lifespan="on", timeout_graceful_shutdown=graceful_timeout,
                          timeout_keep_alive=5, server_header=False)


def serve(embedder: Embedder, db_uri: str | None, host: str = "127.0.0.1", port: int = 8080, *,
          collection: str = "default", dim: int | None = None, limits: Limits | None = None,
          log_level: str = "info", access_log: bool = False, graceful_timeout: float = 30.0) -> None:
    """Serve until SIGINT / SIGTERM, then shut down gracefully.

    On the signal the server stops accepting connections and answers 503 to new
    requests on open ones; in-flight requests finish (up to ``graceful_timeout``
    seconds), the batcher drains and store writes complete before it returns.

    Args:
        embedder: the embedder to serve.
        db_uri: LanceDB directory, or ``None`` for embeddings only.
        host: interface to bind (keep ``127.0.0.1`` unless behind a proxy: there is no auth).
        port: TCP port (0: any free one).
        collection: collection name.
        dim: dimension of a newly created collection.
        limits: request limits and batching settings.
        log_level: uvicorn log level.
        access_log: log every request.
        graceful_timeout: seconds in-flight requests get after the signal.

    Returns:
        After the graceful shutdown that a SIGINT / SIGTERM started.

    Raises:
        ModelMismatchError: the collection was made with another model (opened before
            the port is bound, so nothing is served).
        StoreError: the database cannot be opened.
        SystemExit: uvicorn could not start (e.g. the port is in use; logged by uvicorn).
    """
    app = create_app(embedder, db_uri, collection, limits, dim)
    svc = app.state.service
    if db_uri is not None:
        svc.open_store()
    server = _make_server(app, _config(app, host, port, log_level, access_log, graceful_timeout))
    try:
        with _signals_return():
            server.run()
    except SystemExit:
        if svc.startup_error is not None:
            raise svc.startup_error from None
        raise


@contextlib.contextmanager
def _signals_return():
    """Make ``serve`` return after a graceful SIGINT/SIGTERM shutdown.

    uvicorn re-raises the signal it handled once it has shut down, which with the
    default handlers kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT).
    With no-op handlers installed underneath uvicorn's own, the re-raise does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks, notebooks).

    Args:
        app: from ``create_app``.
        host: interface.
        port: 0 picks a free port (see ``port`` after ``start``).
        log_level: uvicorn log level.
        graceful_timeout: seconds in-flight requests get on ``stop``.

    Example:
        >>> with BackgroundServer(create_app(emb)) as srv:
        ...     httpx.post(f"{srv.url}/v1/embeddings", json={"input": "hi"})
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning", graceful_timeout: float = 30.0):
        self.app = app
        self.host = host
        # bound here so the port is known (and free) before the thread starts
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.server = _make_server(
            app, _config(app, host, self.port, log_level, False, graceful_timeout))
        self._thread = threading.Thread(target=self._run, name="lodevec-server", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        """Start and wait until the server accepts connections.

        Raises:
            RuntimeError: startup failed or timed out (the cause is chained).
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                cause = self.app.state.service.startup_error or self._error
                self.stop()
                raise RuntimeError(f"the server did not start: {cause!r}") from cause
            time.sleep(0.01)
        return self

    def begin_stop(self) -> None:
        """Start the graceful shutdown and return at once (as SIGTERM would)."""
        self.app.state.service.begin_shutdown()
        self.server.should_exit = True

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down gracefully and wait for the thread."""
        self.begin_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ============================================================================ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the server's options (not ``--model`` / ``--db`` / ``--threads``) to a parser."""
    d = Limits()
    p.add_argument("--addr", default=DEFAULT_ADDR, help=f"HOST:PORT to listen on (default {DEFAULT_ADDR})")
    p.add_argument("--collection", default="default", help="collection to search and write")
    p.add_argument("--dim", type=int, default=None, help="dimension of a new collection (Matryoshka)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="texts per model forward")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="how long a text waits for others to share its forward")
    p.add_argument("--max-inputs", type=int, default=d.max_inputs, help="texts per request")
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20, help="request body size")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="texts waiting for the model before 429")
    p.add_argument("--no-truncate", action="store_true",
                   help="refuse over-long texts (413) unless a request sends truncate=true")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds in-flight requests get on shutdown")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")


def limits_from_args(args: argparse.Namespace) -> Limits:
    """``Limits`` from the options of ``add_arguments``."""
    return Limits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                  max_inputs=args.max_inputs, max_body_bytes=int(args.max_body_mb * 2**20),
                  max_queue=args.max_queue, truncate=False if args.no_truncate else None)


def serve_from_args(embedder: Embedder, db_uri: str | None, args: argparse.Namespace) -> None:
    """``serve`` with the options of ``add_arguments`` (what ``lodevec serve`` calls)."""
    host, port = parse_addr(args.addr)
    serve(embedder, db_uri, host, port, collection=args.collection, dim=args.dim,
          limits=limits_from_args(args), log_level=args.log_level, access_log=args.access_log,
          graceful_timeout=args.graceful_timeout)


def main(argv: list[str] | None = None) -> None:
    """``python -m lodevec.server --model FILE [--db DIR] [--addr HOST:PORT]``."""
    p = argparse.ArgumentParser(prog="python -m lodevec.server", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="GGUF model file")
    p.add_argument("--db", default=None, help="LanceDB directory (omit: embeddings only)")
    p.add_argument("--threads", type=int, default=None, help="compute threads")
    p.add_argument("--cache-size", type=int, default=50_000, help="embedding cache entries (0: off)")
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    emb = Embedder.from_gguf(args.model, threads=args.threads, cache_size=args.cache_size)
    serve_from_args(emb, args.db, args)


if __name__ == "__main__":
    main()
