"""What the server sends: compact JSON, the embeddings list, search results."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import numpy as np
from starlette.responses import Response

__all__ = ["dumps", "json_response", "render_embeddings", "render_vectors", "result_dict",
           "tokens_list"]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN / infinity are refused rather than sent as invalid JSON."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(dumps(obj), status, headers, media_type="application/json")


def render_embeddings(out: dict, vecs: np.ndarray, fmt: str) -> bytes:
    """The ``/v1/embeddings`` body: ``out`` with its ``data`` list filled from ``vecs``
    (``float32 (n, dim)``) as JSON numbers or, for ``base64``, little-endian float32
    bytes as OpenAI sends them."""
    if fmt == "base64":
        le = vecs.astype("<f4", copy=False)
        items = [base64.b64encode(v.tobytes()).decode("ascii") for v in le]
    else:
        items = vecs.tolist()
    out["data"] = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    return dumps(out)


def render_vectors(vecs: np.ndarray) -> bytes:
    """TEI's ``/embed`` body: the vectors as a JSON array of arrays."""
    return dumps(vecs.tolist())


def tokens_list(details: list[tuple[str, list]]) -> list[list[dict]]:
    """TEI's ``/tokenize`` body from ``Embedder.token_details``: character spans become
    UTF-8 byte spans, as TEI counts them."""
    out = []
    for text, tokens in details:
        if text.isascii():
            at = None
        else:  # byte offset of each character, and of the end
            at = [0]
            for ch in text:
                at.append(at[-1] + len(ch.encode("utf-8")))
        out.append([{"id": tid, "text": piece, "special": special,
                     "start": start if at is None or start is None else at[start],
                     "stop": stop if at is None or stop is None else at[stop]}
                    for tid, piece, special, start, stop in tokens])
    return out


def result_dict(r: Any) -> dict:
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
