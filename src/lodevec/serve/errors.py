"""The server's own errors and the one table mapping every exception to an HTTP answer.

Every error body is OpenAI-shaped, ``{"error": {"message", "type", "param", "code"}}``,
and its status comes from ``ERROR_TABLE`` (as TEI's router maps its errors in one place:
400 bad JSON, 401 no / wrong key, 403 read-only key or foreign Host / Origin, 415 not
JSON, 413 too large, 422 validation, 429 overloaded, 503 not ready).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .. import errors
from ..errors import BatcherClosed, QueueFull
from .responses import json_response

__all__ = ["ERROR_TABLE", "APIError", "BadHost", "BadOrigin", "BodyTooLarge", "DocumentNotFound",
           "InputTooLong", "InvalidJSON", "MissingKey", "ModelNotFound", "NoCollection",
           "ReadOnlyKey", "TooManyInputs", "TooManyTokens", "Unavailable", "UnknownField",
           "UnsupportedMediaType", "ValidationFailed", "WrongKey", "error_response"]

log = logging.getLogger("lodevec.server")


class APIError(errors.LodevecError):
    """An error the server raises itself; the message is shown to the client.

    Args:
        message: what went wrong and how to fix it.
        param: the request field at fault, if any.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class RequestError(APIError, errors.InputError):
    """The request is at fault (4xx)."""


class InvalidJSON(RequestError):
    """The body is not JSON."""


class ValidationFailed(RequestError):
    """A field is missing or has the wrong type or value."""


class UnknownField(ValidationFailed):
    """The body has a field the route does not know (a typo would otherwise be ignored)."""


class UnsupportedMediaType(RequestError):
    """The body is not declared ``application/json``."""


class MissingKey(RequestError):
    """No ``Authorization: Bearer`` key, and the server needs one."""


class WrongKey(RequestError):
    """The key is not one of the server's."""


class ReadOnlyKey(RequestError):
    """A read-only key on a route that writes."""


class BadHost(RequestError):
    """The ``Host`` header names another site (DNS rebinding)."""


class BadOrigin(RequestError):
    """A browser request from a site CORS does not allow."""


class ModelNotFound(RequestError):
    """``GET /v1/models/{id}`` of a model this server does not serve."""


class BodyTooLarge(RequestError):
    """The body is larger than ``Limits.max_body_bytes``."""


class TooManyInputs(RequestError):
    """More texts or documents than ``Limits.max_inputs``."""


class TooManyTokens(RequestError):
    """More tokens in the request than ``Limits.max_request_tokens``."""


class InputTooLong(RequestError):
    """A text is longer than the model's maximum and truncation was refused."""


class DocumentNotFound(RequestError):
    """No document has the given id."""


class NoCollection(APIError):
    """The server runs without a database."""


class Unavailable(APIError):
    """The server is starting or stopping."""


#: ``(exception class, HTTP status, OpenAI error type, code)``: the first row whose class
#: matches wins, so subclasses come before their bases.  The one place statuses are set.
ERROR_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (ClientDisconnect, 499, "invalid_request_error", "client_disconnected"),  # nobody reads it
    (MissingKey, 401, "invalid_request_error", "missing_api_key"),
    (WrongKey, 401, "invalid_request_error", "invalid_api_key"),
    (ReadOnlyKey, 403, "permission_error", "read_only_key"),
    (BadHost, 403, "permission_error", "host_not_allowed"),
    (BadOrigin, 403, "permission_error", "origin_not_allowed"),
    (UnsupportedMediaType, 415, "invalid_request_error", "unsupported_media_type"),
    (InvalidJSON, 400, "invalid_request_error", "invalid_json"),
    (BodyTooLarge, 413, "invalid_request_error", "body_too_large"),
    (TooManyInputs, 413, "invalid_request_error", "too_many_inputs"),
    (TooManyTokens, 413, "invalid_request_error", "too_many_tokens"),
    (InputTooLong, 413, "invalid_request_error", "input_too_long"),
    (DocumentNotFound, 404, "not_found_error", "document_not_found"),
    (ModelNotFound, 404, "not_found_error", "model_not_found"),
    (NoCollection, 404, "not_found_error", "collection_not_found"),
    (errors.CollectionNotFoundError, 404, "not_found_error", "collection_not_found"),
    (errors.ModelMismatchError, 409, "invalid_request_error", "model_mismatch"),
    (errors.QueryError, 422, "invalid_request_error", "invalid_query"),  # bad 'where' filter
    (QueueFull, 429, "rate_limit_error", "overloaded"),
    # the loaded model gave NaN or inf: the server's model file is at fault, not the request
    (errors.NonFiniteEmbeddingError, 500, "server_error", "non_finite_embedding"),
    (Unavailable, 503, "server_error", "unavailable"),
    (BatcherClosed, 503, "server_error", "unavailable"),
    (errors.DimensionError, 422, "invalid_request_error", "invalid_dimensions"),
    (errors.TextError, 422, "invalid_request_error", "invalid_input"),
    (errors.RecordError, 422, "invalid_request_error", "invalid_document"),
    (UnknownField, 422, "invalid_request_error", "unknown_field"),
    (ValidationFailed, 422, "invalid_request_error", "invalid_value"),
    (errors.InputError, 422, "invalid_request_error", "invalid_request"),
    (errors.StoreError, 500, "server_error", "store_error"),
    (Exception, 500, "server_error", "internal_error"),
)

#: statuses Starlette's router raises itself (unknown route, wrong method)
_HTTP_CODES = {404: ("not_found_error", "route_not_found"),
               405: ("invalid_request_error", "method_not_allowed")}


def error_response(exc: BaseException) -> Response:
    """The JSON error response for ``exc``, status from ``ERROR_TABLE``.

    A 5xx that is not a ``LodevecError`` is a bug: it is logged with its traceback and
    its message names the exception type.
    """
    headers = {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        etype, code = _HTTP_CODES.get(status, ("invalid_request_error", f"http_{status}"))
        message = str(exc.detail)
        headers.update(exc.headers or {})
    else:
        status, etype, code = next((s, t, c) for cls, s, t, c in ERROR_TABLE if isinstance(exc, cls))
        message = str(exc) or type(exc).__name__
        if status >= 500 and not isinstance(exc, errors.LodevecError):
            log.error("internal error", exc_info=exc)
            message = f"internal error: {type(exc).__name__}: {message}"
    if status in (429, 503):
        headers["retry-after"] = "1"
    elif status == 401:
        headers["www-authenticate"] = 'Bearer realm="lodevec"'
    param = getattr(exc, "param", None)
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return json_response(body, status, headers)


async def http_error(request, exc: Exception) -> Response:
    """Starlette's exception handler for its own ``HTTPException`` (404 route, 405 method)."""
    return error_response(exc)
