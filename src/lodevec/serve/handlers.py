"""One function per route, each thin over the library: parse (``schemas``), ask the
service / collection, answer (``responses``).  Errors propagate to
``serve.errors.ERROR_TABLE``.

Anything slow for the event loop (store calls, big JSON) runs in a thread: a store read
in Starlette's pool, a store write on the service's single writer thread.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__, errors
from ..arch import TASKS
from . import metrics
from .errors import DocumentNotFound, ModelNotFound, ValidationFailed
from .responses import (
    json_response,
    render_embeddings,
    render_vectors,
    result_dict,
    tokens_list,
)
from .schemas import (
    EmbeddingsRequest,
    EmbedRequest,
    SearchRequest,
    TokenizeRequest,
    UpsertRequest,
    documents,
    read_json,
)
from .service import Service, arrived

__all__ = ["delete_document", "embed", "embeddings", "get_document", "health", "info",
           "metrics_page", "model", "models", "search", "tokenize", "upsert_documents"]


async def embeddings(svc: Service, request: Request) -> Response:
    """``POST /v1/embeddings`` (and ``/embeddings``): OpenAI's embeddings API.  ``model``
    in the answer is the served model, whatever the request named."""
    req = EmbeddingsRequest.parse(await read_json(request, svc.limits.max_body_bytes), svc.rules)
    res = await svc.embed(req.texts, req.task, req.dim, req.truncate)
    n_tokens = int(sum(res.n_tokens))
    out = {"object": "list", "data": None, "model": svc.model_name,
           "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
    return await _vectors(res, render_embeddings, out, res.embeddings, req.encoding_format)


async def embed(svc: Service, request: Request) -> Response:
    """``POST /embed``: TEI's embeddings route, ``[[floats], ...]``."""
    req = EmbedRequest.parse(await read_json(request, svc.limits.max_body_bytes), svc.rules)
    res = await svc.embed(req.texts, req.task, req.dim, req.truncate, what="inputs")
    return await _vectors(res, render_vectors, res.embeddings)


async def _vectors(res, render, *args) -> Response:
    """The JSON of ``render(*args)``, truncated inputs listed in ``x-lodevec-truncated``."""
    headers = {}
    cut = [i for i, t in enumerate(res.truncated) if t]
    if cut:
        headers["x-lodevec-truncated"] = ",".join(map(str, cut))
    if res.embeddings.size > 65536:  # building big JSON would stall the event loop
        payload = await run_in_threadpool(render, *args)
    else:
        payload = render(*args)
    return Response(payload, 200, headers, media_type="application/json")


async def tokenize(svc: Service, request: Request) -> Response:
    """``POST /tokenize``: TEI's tokens, ``{id, text, special, start, stop}`` per token,
    ``start:stop`` the UTF-8 byte span in the prompted text (as TEI gives it)."""
    req = TokenizeRequest.parse(await read_json(request, svc.limits.max_body_bytes), svc.rules)
    details = await run_in_threadpool(svc.embedder.token_details, req.texts, req.task,
                                      req.add_special_tokens)
    return json_response(tokens_list(details))


async def models(svc: Service, request: Request) -> Response:
    """``GET /v1/models``: OpenAI's model list, the one served model."""
    return json_response({"object": "list", "data": [_model_dict(svc)]})


async def model(svc: Service, request: Request) -> Response:
    """``GET /v1/models/{id}``."""
    model_id = request.path_params["model_id"]
    if model_id != svc.model_name:
        raise ModelNotFound(f"this server serves {svc.model_name!r}, not {model_id!r}", "model")
    return json_response(_model_dict(svc))


def _model_dict(svc: Service) -> dict:
    """OpenAI's model object, plus what a client sizing its vectors needs."""
    return {"id": svc.model_name, "object": "model", "created": int(svc.started_at),
            "owned_by": "lodevec", "dimension": svc.dim, "dims": list(svc.embedder.dims),
            "max_tokens": svc.max_tokens}


async def search(svc: Service, request: Request) -> Response:
    """``POST /search``: the query embedded as ``search_query`` (unless ``mode`` is
    ``fts``), then the collection's search."""
    req = SearchRequest.parse(await read_json(request, svc.limits.max_body_bytes), svc.rules)
    coll = svc.require_collection()
    vector = None
    if req.mode == "fts":
        arrived()  # nothing to embed: the batcher need not wait for this request
    else:
        res = await svc.embed([req.query], "search_query", coll.dim, truncate=True, what="query")
        vector = res.embeddings[0]
    try:
        results = await run_in_threadpool(
            lambda: coll.search(vector, k=req.k, where=req.where, query_text=req.query,
                                mode=req.mode, exact=req.exact))
    except errors.QueryError as exc:
        exc.param = "where" if req.where is not None else "query"
        raise
    except errors.LodevecError:  # the server's own errors included
        raise
    except Exception as exc:
        if req.where is not None:  # LanceDB's own error for a bad filter
            raise ValidationFailed(f"the search failed; check 'where': {exc}", "where") from exc
        raise
    return json_response({"results": [result_dict(r) for r in results]})


async def upsert_documents(svc: Service, request: Request) -> Response:
    """``POST /documents``: embed as ``search_document`` and upsert by id."""
    req = UpsertRequest.parse(await read_json(request, svc.limits.max_body_bytes), svc.rules)
    coll = svc.require_collection()
    records = documents(req.docs)
    res = await svc.embed([r["text"] for r in records], "search_document", coll.dim, req.truncate,
                          what="documents")
    for r, vec in zip(records, res.embeddings, strict=True):
        r["embedding"] = vec
    await svc.write(coll.upsert, records)
    n_tokens = int(sum(res.n_tokens))
    return json_response({
        "upserted": len(records), "ids": [r["id"] for r in records],
        "truncated": [r["id"] for r, t in zip(records, res.truncated, strict=True) if t],
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


async def get_document(svc: Service, request: Request) -> Response:
    """``GET /documents/{id}``."""
    doc_id = request.path_params["doc_id"]
    coll = svc.require_collection()
    found = await run_in_threadpool(coll.get, [doc_id])
    if not found:
        raise DocumentNotFound(f"no document has id {doc_id!r}", "id")
    return json_response(result_dict(found[0]))


async def delete_document(svc: Service, request: Request) -> Response:
    """``DELETE /documents/{id}``."""
    doc_id = request.path_params["doc_id"]
    coll = svc.require_collection()

    def delete() -> int:
        # on the writer thread, so no upsert slips in between the check and the delete
        if not coll.get([doc_id]):
            return 0
        coll.delete(ids=[doc_id])
        return 1

    if not await svc.write(delete):
        raise DocumentNotFound(f"no document has id {doc_id!r}", "id")
    return json_response({"deleted": 1, "id": doc_id})


async def health(svc: Service, request: Request) -> Response:
    """``GET /health``: 200 when ready, else 503 with the phase."""
    ok = svc.phase == "ready"
    return json_response({"status": "ok" if ok else svc.phase}, 200 if ok else 503)


async def info(svc: Service, request: Request) -> Response:
    """``GET /info``: the model, the collection, the limits, the queue's counters and the
    compute (device, kernel ISA level, int8 dot, OpenMP, threads)."""
    rows = resident = None
    if svc.collection is not None:
        rows = await run_in_threadpool(svc.collection.count)
        resident = svc.collection.resident_info()
    emb = svc.embedder
    return json_response({
        "model": svc.model_name, "architecture": emb.architecture,
        "dimension": svc.dim, "dims": list(emb.dims), "max_tokens": svc.max_tokens,
        "tasks": list(TASKS), "collection": svc.collection_name if svc.collection else None,
        "db": svc.db_uri, "rows": rows, "version": __version__, "status": svc.phase,
        "uptime_s": round(time.time() - svc.started_at, 3),
        "limits": {**asdict(svc.limits), "truncate": svc.truncate_default},
        "batcher": svc.batcher.stats(), "cache": svc.embedder.cache.stats(),
        "resident": resident, "compute": emb.compute})


async def metrics_page(svc: Service, request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    text = metrics.render(model=svc.model_name, dim=svc.dim, up=svc.phase == "ready",
                          http=svc.metrics, batcher=svc.batcher, cache=svc.embedder.cache.stats(),
                          pending_writes=svc.pending_writes)
    return Response(text, 200, media_type="text/plain; version=0.0.4; charset=utf-8")
