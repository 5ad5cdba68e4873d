"""The HTTP app: OpenAI-compatible embeddings, search and document upserts.

``create_app`` builds a Starlette app over one ``Embedder`` and (optionally) one
collection of a LanceDB database; ``run.serve`` runs it with uvicorn.  Routes:

- ``POST /v1/embeddings``: the OpenAI embeddings API (``input``, ``model``,
  ``dimensions``, ``encoding_format``), plus ``task`` (nomic prefix, default
  ``search_document``) and ``truncate``.  Existing OpenAI / LangChain clients work
  unchanged.  Truncated inputs are listed in the ``x-lodevec-truncated`` header.
- ``GET /v1/models``, ``GET /v1/models/{id}``: the served model (OpenAI's list shape).
- ``POST /embed``, ``POST /tokenize``: Hugging Face TEI's routes.
- ``POST /search``: ``{query, k, where, mode, exact}`` over the collection.
- ``POST /documents``, ``GET /documents/{id}``, ``DELETE /documents/{id}``.
- ``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus text format).

Who may call which route is ``security``'s: API keys (read or full access, ``/health``
open), the Host / Origin checks against DNS rebinding and cross-site requests, CORS.

All texts go through one ``DynamicBatcher``, so concurrent requests share model
forwards.  Every error is a JSON body ``{"error": {"message", "type", "param",
"code"}}`` whose status comes from ``errors.ERROR_TABLE``.

A new route is a handler (``handlers``), a schema (``schemas``) and one line of ``ROUTES``,
under the key it needs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from ..embedding.embedder import Embedder
from . import handlers
from .errors import Unavailable, error_response, http_error
from .limits import Limits
from .security import OPEN, READ, WRITE, Guard, Security
from .service import Service, arriving

__all__ = ["ROUTES", "create_app"]


class AnyPath(PathConvertor):
    """``{name:path}`` that also matches newlines (a document id may hold any character;
    the client percent-encodes it, uvicorn decodes it)."""

    regex = "[\\s\\S]*"


register_url_convertor("anypath", AnyPath())

Handler = Callable[[Service, Request], Awaitable[Response]]

#: the routes by the key they need (``security``: none, a read key, a full key), each
#: ``(path, method, handler, embeds)``; ``embeds``: the handler embeds texts, so it is
#: counted as arriving until its texts are queued (the batcher waits for it)
ROUTES: dict[str, tuple[tuple[str, str, Handler, bool], ...]] = {
    OPEN: (("/health", "GET", handlers.health, False),),
    READ: (
        ("/v1/embeddings", "POST", handlers.embeddings, True),
        ("/embeddings", "POST", handlers.embeddings, True),
        ("/v1/models", "GET", handlers.models, False),
        ("/v1/models/{model_id:path}", "GET", handlers.model, False),
        ("/embed", "POST", handlers.embed, True),  # TEI
        ("/tokenize", "POST", handlers.tokenize, False),  # TEI
        ("/search", "POST", handlers.search, True),
        ("/documents/{doc_id:anypath}", "GET", handlers.get_document, False),
        ("/info", "GET", handlers.info, False),
        ("/metrics", "GET", handlers.metrics_page, False),
    ),
    WRITE: (
        ("/documents", "POST", handlers.upsert_documents, True),
        ("/documents/{doc_id:anypath}", "DELETE", handlers.delete_document, False),
    ),
}


def _endpoint(fn: Handler, svc: Service, access: str,
              embeds: bool) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of a handler: the key checked, then the handler; every
    exception becomes its JSON error response."""

    async def endpoint(request: Request) -> Response:
        try:
            svc.security.authorize(request.headers.get("authorization"), access)
            if embeds:
                with arriving(svc):
                    return await fn(svc, request)
            return await fn(svc, request)
        except Exception as exc:  # noqa: BLE001 - mapped by ERROR_TABLE, 500 included
            return error_response(exc)

    endpoint.__name__ = fn.__name__
    return endpoint


class _Observe:
    """ASGI middleware: 503 outside the ready phase, request counts and latencies."""

    _ALWAYS = ("/health", "/metrics", "/info")

    def __init__(self, app, service: Service, routes: list[Route]):
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


def create_app(embedder: Embedder, db_uri: str | None = None, collection: str = "default",
               limits: Limits | None = None, dim: int | None = None,
               security: Security | None = None) -> Starlette:
    """Build the ASGI app.

    Args:
        embedder: the embedder every route uses (its cache is shared).
        db_uri: LanceDB directory / URI; ``None`` serves embeddings only (the document
            routes answer 404).
        collection: the collection searched and written.  Created at startup if missing.
        limits: request limits and batching settings (``Limits()`` defaults).
        dim: dimension of a new collection (default: the model's full size); an existing
            collection keeps its own.
        security: API keys, CORS origins, allowed hosts (``Security()``: no key, CORS
            off; the Host and Origin checks always apply).

    Returns:
        A Starlette app; the service object is at ``app.state.service``.  Startup
        (lifespan) opens the collection and starts the batcher; shutdown drains the
        batcher and waits for store writes.

    Raises:
        DimensionError: ``dim`` is not one of the model's dimensions.
    """
    svc = Service(embedder, db_uri, collection, dim, limits or Limits(), security or Security())
    routes = [Route(path, _endpoint(fn, svc, access, embeds), methods=[method])
              for access, rows in ROUTES.items() for path, method, fn, embeds in rows]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await svc.startup()
        try:
            yield
        finally:
            await svc.shutdown()

    middleware = [Middleware(_Observe, service=svc, routes=routes),
                  Middleware(Guard, security=svc.security)]
    if svc.security.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(svc.security.cors_origins),
            allow_methods=["GET", "POST", "DELETE"], allow_headers=["authorization", "content-type"],
            expose_headers=["x-lodevec-truncated"], max_age=600))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error})
    app.state.service = svc
    return app
