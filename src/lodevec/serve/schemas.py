"""Request bodies: read (size-limited JSON), then checked field by field, one parser per route.

Every check raises an ``APIError`` naming the field (``param``), so the client is told
which field to fix and how; ``serve.errors.ERROR_TABLE`` gives the status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from .. import errors
from ..arch import TASKS
from ..store.validation import Voice, validate_record
from .errors import (
    BodyTooLarge,
    InvalidJSON,
    TooManyInputs,
    UnknownField,
    UnsupportedMediaType,
    ValidationFailed,
)

__all__ = ["MISSING", "SEARCH_MODES", "EmbedRequest", "EmbeddingsRequest", "Rules",
           "SearchRequest", "TokenizeRequest", "UpsertRequest", "documents", "read_json"]

#: a field the body does not have (``None`` is JSON null, which some fields accept)
MISSING = object()
#: ``mode`` of ``/search``: those of ``Collection.search``
SEARCH_MODES = ("vector", "hybrid", "fts")
#: TEI's / sentence-transformers' prompt names for lodevec's tasks
PROMPT_ALIASES = {"query": "search_query", "document": "search_document",
                  "passage": "search_document"}


@dataclass(frozen=True)
class Rules:
    """What requests are checked against: the server's limits and the model's choices.

    Attributes:
        max_inputs: most texts / documents per request.
        max_k: largest ``k`` of ``/search``.
        allow_empty: empty texts are embedded rather than refused.
        truncate: the default of the ``truncate`` field.
        check_dim: the model's dimension check (``None`` gives the full size; raises
            ``DimensionError`` listing the valid ones).
    """

    max_inputs: int
    max_k: int
    allow_empty: bool
    truncate: bool
    check_dim: Callable[[Any], int]


# ------------------------------------------------------------------------ the body
async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON: declared ``application/json`` (415), at most ``limit`` bytes
    (413), valid JSON (400).

    Only JSON is read, so a browser cannot post here with a "simple" cross-site request
    (``text/plain`` and form types skip the CORS preflight).
    """
    ctype = request.headers.get("content-type")
    if (ctype or "").split(";", 1)[0].strip().lower() != "application/json":
        got = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise UnsupportedMediaType(f"the body must be JSON sent as Content-Type: "
                                   f"application/json; the request has {got}")
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
        if size > 256 * 1024:  # parsing megabytes would stall the event loop
            return await run_in_threadpool(json.loads, body)
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidJSON(f"the request body is not valid JSON: {exc}") from None


# ------------------------------------------------------------------------ fields
def type_name(v: Any) -> str:
    """How an error message names a JSON value's type."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def object_of(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise ValidationFailed(f"the request body must be a JSON object ({what}), "
                               f"not {type_name(body)}")
    return body


def known_fields(body: dict, allowed: frozenset[str], where: str = "") -> None:
    """Refuse a field the route does not know, naming it (a misspelt option would
    otherwise be silently ignored)."""
    for name in body:
        if name not in allowed:
            raise UnknownField(f"unknown field '{where}{name}'; the fields are "
                               f"{', '.join(sorted(allowed))}", f"{where}{name}")


def texts_of(value: Any, rules: Rules, param: str = "input") -> list[str]:
    """``input``: a string or a list of strings, none empty."""
    if value is MISSING or value is None:
        raise ValidationFailed(f"'{param}' is required: a string or an array of strings", param)
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list):
        if not value:
            raise ValidationFailed(f"'{param}' is an empty array; send at least one text", param)
        max_items(value, rules, param)
        if any(isinstance(v, list) for v in value) or all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValidationFailed(
                f"'{param}' holds token ids; this server embeds text only, send strings "
                "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))", param)
    else:
        raise ValidationFailed(f"'{param}' must be a string or an array of strings, "
                               f"not {type_name(value)}", param)
    for i, t in enumerate(value):
        if not isinstance(t, str):
            raise ValidationFailed(f"{param}[{i}] is {type_name(t)}; expected a string", param)
        if not rules.allow_empty and not t.strip():
            raise ValidationFailed(f"{param}[{i}] is empty; there is nothing to embed", param)
    return value


def max_items(value: list, rules: Rules, param: str) -> None:
    if len(value) > rules.max_inputs:
        raise TooManyInputs(f"'{param}' has {len(value)} items; at most "
                            f"{rules.max_inputs} per request", param)


def dimensions_of(value: Any, rules: Rules) -> int:
    try:
        return rules.check_dim(value)
    except errors.DimensionError as exc:
        exc.param = "dimensions"
        raise


def task_of(value: Any, default: str) -> str:
    if value is None:
        return default
    if value not in TASKS:
        raise ValidationFailed(f"'task' must be one of {', '.join(TASKS)}; got {value!r}", "task")
    return value


def prompt_of(value: Any, default: str) -> str:
    """TEI's ``prompt_name``: a lodevec task, or its sentence-transformers name."""
    if value is None:
        return default
    task = PROMPT_ALIASES.get(value, value) if isinstance(value, str) else value
    if task not in TASKS:
        raise ValidationFailed(f"'prompt_name' must be one of {', '.join(TASKS)} (or "
                               f"{', '.join(PROMPT_ALIASES)}); got {value!r}", "prompt_name")
    return task


def bool_field(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationFailed(f"'{name}' must be true or false, not {type_name(value)}", name)
    return value


def int_field(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"'{name}' must be an integer, not {type_name(value)}", name)
    if not lo <= value <= hi:
        raise ValidationFailed(f"'{name}' must be in {lo}..{hi}, got {value}", name)
    return value


# ------------------------------------------------------------------------ routes
@dataclass(frozen=True)
class EmbeddingsRequest:
    """``POST /v1/embeddings``: OpenAI's fields plus ``task`` and ``truncate``."""

    texts: list[str]
    model: str | None
    dim: int
    encoding_format: str
    task: str
    truncate: bool

    #: OpenAI's own fields and lodevec's two
    FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user", "task",
                        "truncate"})

    @classmethod
    def parse(cls, body: Any, rules: Rules) -> EmbeddingsRequest:
        body = object_of(body, 'with an "input" field')
        known_fields(body, cls.FIELDS)
        texts = texts_of(body.get("input", MISSING), rules)
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise ValidationFailed(f"'model' must be a string, not {type_name(model)}", "model")
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise ValidationFailed(f"'user' must be a string, not {type_name(user)}", "user")
        dim = dimensions_of(body.get("dimensions"), rules)
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise ValidationFailed(f"'encoding_format' must be float or base64, got {fmt!r}",
                                   "encoding_format")
        task = task_of(body.get("task"), "search_document")
        return cls(texts, model, dim, fmt, task, bool_field(body, "truncate", rules.truncate))


@dataclass(frozen=True)
class SearchRequest:
    """``POST /search``: ``{query, k, where, mode, exact}``; ``hybrid: true`` is the
    older spelling of ``mode: "hybrid"``."""

    FIELDS = frozenset({"query", "k", "where", "mode", "hybrid", "exact"})

    query: str
    k: int
    where: str | None
    mode: str
    exact: bool

    @property
    def hybrid(self) -> bool:
        return self.mode == "hybrid"

    @classmethod
    def parse(cls, body: Any, rules: Rules) -> SearchRequest:
        body = object_of(body, 'with a "query" field')
        known_fields(body, cls.FIELDS)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValidationFailed("'query' must be a non-empty string", "query")
        k = int_field(body, "k", 10, 1, rules.max_k)
        where = body.get("where")
        if where is not None and (not isinstance(where, str) or not where.strip()):
            raise ValidationFailed("'where' must be a filter expression string, e.g. "
                                   "\"source = 'api'\"", "where")
        hybrid = bool_field(body, "hybrid", False)
        mode = body.get("mode")
        if mode is None:
            mode = "hybrid" if hybrid else "vector"
        elif mode not in SEARCH_MODES:
            raise ValidationFailed(f"'mode' must be one of {', '.join(SEARCH_MODES)}; got {mode!r}",
                                   "mode")
        elif hybrid and mode != "hybrid":
            raise ValidationFailed(f"'hybrid': true contradicts 'mode': {mode!r}; send only "
                                   "'mode'", "hybrid")
        return cls(query, k, where, mode, bool_field(body, "exact", False))


def tei_inputs(body: Any, fields: frozenset[str], rules: Rules) -> tuple[dict, list[str]]:
    """A TEI body checked for its fields, and its ``inputs``."""
    body = object_of(body, 'with an "inputs" field')
    known_fields(body, fields)
    return body, texts_of(body.get("inputs", MISSING), rules, "inputs")


@dataclass(frozen=True)
class EmbedRequest:
    """``POST /embed`` (TEI): ``{inputs, normalize?, truncate?, truncation_direction?,
    prompt_name?, dimensions?}``.  ``prompt_name`` is the task (default
    ``search_document``, as ``/v1/embeddings``)."""

    FIELDS = frozenset({"inputs", "normalize", "truncate", "truncation_direction",
                        "prompt_name", "dimensions"})

    texts: list[str]
    task: str
    dim: int
    truncate: bool

    @classmethod
    def parse(cls, body: Any, rules: Rules) -> EmbedRequest:
        body, texts = tei_inputs(body, cls.FIELDS, rules)
        if not bool_field(body, "normalize", True):
            raise ValidationFailed("'normalize': false is not supported; this server returns "
                                   "unit-length vectors", "normalize")
        direction = body.get("truncation_direction")
        if direction is not None and str(direction).lower() != "right":
            raise ValidationFailed("'truncation_direction' must be \"right\": texts are cut "
                                   "at their end", "truncation_direction")
        return cls(texts, prompt_of(body.get("prompt_name"), "search_document"),
                   dimensions_of(body.get("dimensions"), rules),
                   bool_field(body, "truncate", rules.truncate))


@dataclass(frozen=True)
class TokenizeRequest:
    """``POST /tokenize`` (TEI): ``{inputs, add_special_tokens?, prompt_name?}``; the
    task's prefix is applied as ``/embed`` applies it, so the tokens are those embedded."""

    FIELDS = frozenset({"inputs", "add_special_tokens", "prompt_name"})

    texts: list[str]
    task: str
    add_special_tokens: bool

    @classmethod
    def parse(cls, body: Any, rules: Rules) -> TokenizeRequest:
        body, texts = tei_inputs(body, cls.FIELDS, rules)
        return cls(texts, prompt_of(body.get("prompt_name"), "search_document"),
                   bool_field(body, "add_special_tokens", True))


@dataclass(frozen=True)
class UpsertRequest:
    """``POST /documents``: ``{"documents": [...], "truncate"?}`` or a bare array.

    ``docs`` are the raw documents: ``documents()`` checks them once the route knows it
    has a collection (a server without one answers 404 whatever the documents are).
    """

    docs: list
    truncate: bool

    @classmethod
    def parse(cls, body: Any, rules: Rules) -> UpsertRequest:
        truncate = rules.truncate
        if isinstance(body, dict):
            if "documents" not in body:
                raise ValidationFailed("send {\"documents\": [{\"id\", \"text\", \"metadata\"?}, ...]} "
                                       "or a bare array of documents", "documents")
            known_fields(body, frozenset({"documents", "truncate"}))
            truncate = bool_field(body, "truncate", truncate)
            docs = body["documents"]
        else:
            docs = body
        if not isinstance(docs, list):
            raise ValidationFailed(f"'documents' must be an array, not {type_name(docs)}", "documents")
        if not docs:
            raise ValidationFailed("'documents' is an empty array", "documents")
        max_items(docs, rules, "documents")
        return cls(docs, truncate)


def documents(docs: list) -> list[dict]:
    """Store records (no embedding yet) from API documents; ids unique."""
    records = [_document(d, i) for i, d in enumerate(docs)]
    seen: set[str] = set()
    for i, r in enumerate(records):
        if r["id"] in seen:
            raise ValidationFailed(f"documents[{i}]: id {r['id']!r} appears twice", "documents")
        seen.add(r["id"])
    return records


_DOCUMENT_FIELDS = frozenset({"id", "text", "metadata", "source", "chunk"})


def _invalid_document(message: str) -> ValidationFailed:
    return ValidationFailed(message, "documents")


#: how the API words a bad document: a JSON path (``documents[3].text``)
DOCUMENT_VOICE = Voice(
    not_object='{w} must be an object with "id" and "text", not {type}',
    bad_id="{w}.id must be a non-empty string",
    bad_text="{w}.text must be a non-empty string",
    bad_source="{w}.source must be a non-empty string",
    bad_chunk="{w}.chunk must be an integer >= 0",
    bad_metadata="{w}.metadata must be an object, not {type}",
    bad_metadata_value="{w}.metadata is not JSON: {e}",
    bad_unicode="{w}.{e} is not valid Unicode (a lone surrogate)",
    error=_invalid_document,
)


def _document(d: Any, i: int) -> dict:
    """A store record from one API document, checked by the store's one validator
    (no embedding yet)."""
    where = f"documents[{i}]"
    if isinstance(d, dict):
        known_fields(d, _DOCUMENT_FIELDS, f"{where}.")
    return validate_record(d, label=where, voice=DOCUMENT_VOICE, default_source="api")
