"""The rules every record passes, in one place, without Arrow: the store's upsert, the
server's documents and the records ingester all call :func:`validate_record`; each
words the problems in its own voice (:class:`Voice`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from ..text.validity import is_blank, surrogate_at

INT32_MAX = 2**31 - 1


def content_hash(text: str) -> str:
    """The ``content_hash`` column: sha256 of the text's UTF-8 bytes (hex)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def metadata_json(meta: Any, where: str) -> str:
    """A record's metadata as a JSON object string (RecordError if it is not one)."""
    if meta is None:
        return "{}"
    if isinstance(meta, str):
        try:
            parsed = json.loads(meta)
        except ValueError as e:
            raise errors.RecordError(f"{where}: metadata is not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise errors.RecordError(f"{where}: metadata must be a JSON object")
        return meta
    if not isinstance(meta, Mapping):
        raise errors.RecordError(
            f"{where}: metadata must be a dict or a JSON string, got {type(meta).__name__}")
    try:
        return _dump_metadata(meta)
    except (TypeError, ValueError) as e:
        raise errors.RecordError(f"{where}: metadata is not JSON-serialisable: {e}") from None


def _dump_metadata(meta: Mapping) -> str:
    """A metadata mapping as a JSON object string (TypeError / ValueError if it is not
    JSON: NaN and infinities included)."""
    return json.dumps(meta, ensure_ascii=False, allow_nan=False) if meta else "{}"


@dataclass(frozen=True)
class Voice:
    """How a caller words a record problem.

    The rules are one (``_fields``); the words differ by door: the store names
    ``record 3 (id 'x')``, the server a JSON path (``documents[3].text``), the records
    ingester ``file: record 3``.  Templates get ``w`` (the record's name), ``rid``,
    ``type`` (of the bad value) and ``e`` (the JSON error).
    """

    not_object: str = "{w}: expected a dict, got {type}"
    bad_id: str = "{w}: 'id' is missing or not a non-empty string"
    bad_text: str = "{w} (id {rid!r}): 'text' is missing or empty"
    bad_source: str = "{w} (id {rid!r}): 'source' must be a string"
    bad_chunk: str = "{w} (id {rid!r}): 'chunk' must be an int in [0, 2^31)"
    #: a lone surrogate (``e``: the field), which UTF-8 and so the store cannot hold
    bad_unicode: str = "{w}: '{e}' is not valid Unicode (a lone surrogate)"
    #: an id that is there but neither a string nor an integer; None: ``bad_id``
    wrong_id: str | None = None
    #: metadata that is not an object; None: also accept a JSON object string (the store)
    bad_metadata: str | None = None
    #: metadata that is an object but not JSON-serialisable; None: ``metadata_json``'s words
    bad_metadata_value: str | None = None
    #: the exception raised (``RecordError`` or a caller's own subclass of ``InputError``)
    error: Callable[[str], Exception] = errors.RecordError


STORE = Voice()


def _fail(voice: Voice, template: str, w: str, rid: Any = None, value: Any = None,
          e: Any = None) -> Exception:
    return voice.error(template.format(w=w, rid=rid, type=type(value).__name__, e=e))


def _fields(r: Any, i: int, label: str | None, voice: Voice = STORE,
            default_source: str = "") -> tuple[str, str, str, int, str, str]:
    """``(id, text, source, chunk, metadata JSON, content_hash)`` of record ``r``."""
    # hot path of every ingest: exact-type checks first, the general ones only on misses
    if type(r) is not dict and not isinstance(r, Mapping):
        raise _fail(voice, voice.not_object, label or f"record {i}", value=r)
    rid = r.get("id")
    if type(rid) is not str or not rid or rid.isspace():
        if isinstance(rid, bool) or not isinstance(rid, (str, int, np.integer)) \
                or not str(rid).strip():
            wrong = rid is not None and not isinstance(rid, str) and voice.wrong_id is not None
            raise _fail(voice, voice.wrong_id if wrong else voice.bad_id, label or f"record {i}",
                        value=rid)
        rid = str(rid)
    text = r.get("text")
    if type(text) is not str or is_blank(text):
        if not isinstance(text, str) or is_blank(text):
            raise _fail(voice, voice.bad_text, label or f"record {i}", rid)
    source = r.get("source")
    if type(source) is not str or not source:
        if source is None or source == "":
            source = default_source
        elif isinstance(source, (str, os.PathLike)):
            source = os.fspath(source)
        else:
            raise _fail(voice, voice.bad_source, label or f"record {i}", rid)
    chunk = r.get("chunk", 0)
    if type(chunk) is not int or not 0 <= chunk <= INT32_MAX:
        if chunk is None:
            chunk = 0
        elif isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) \
                or not 0 <= chunk <= INT32_MAX:
            raise _fail(voice, voice.bad_chunk, label or f"record {i}", rid)
        chunk = int(chunk)
    meta = r.get("metadata")
    if meta is None:
        meta = "{}"
    elif voice.bad_metadata is not None and not isinstance(meta, Mapping):
        raise _fail(voice, voice.bad_metadata, label or f"record {i}", rid, meta)
    elif voice.bad_metadata_value is not None:
        try:
            meta = _dump_metadata(meta)
        except (TypeError, ValueError) as exc:
            raise _fail(voice, voice.bad_metadata_value, label or f"record {i}", rid, e=exc) from None
    else:
        meta = metadata_json(meta, f"{label or f'record {i}'} (id {rid!r})")
    ch = r.get("content_hash")
    if type(ch) is not str or not ch:
        if ch is not None and ch != "" and not isinstance(ch, str):
            raise errors.RecordError(
                f"{label or f'record {i}'} (id {rid!r}): 'content_hash' must be a string")
        ch = ch or content_hash(text)
    for name, value in (("id", rid), ("text", text), ("source", source), ("metadata", meta)):
        if surrogate_at(value) is not None:
            raise _fail(voice, voice.bad_unicode, label or f"record {i}", rid, e=name)
    return rid, text, source, chunk, meta, ch


def validate_record(record: Any, i: int = 0, *, label: str | None = None, voice: Voice = STORE,
                    default_source: str = "") -> dict:
    """One record checked and normalised as the store writes it (its vector aside): the
    one validator the store, the server and the records ingester share.

    Args:
        record: ``{"id", "text", "source"?, "chunk"?, "metadata"? (dict | JSON string |
            None), "content_hash"? (None -> sha256 of text)}``; other keys are ignored.
        i: its position, for messages (``"record 3: ..."``).
        label: names the record in messages instead (e.g. ``"notes.jsonl:3"``).
        voice: how the messages are worded (the caller's door).
        default_source: the source of a record that gives none.

    Returns:
        ``{"id": str, "text": str, "source": str, "chunk": int, "metadata": str (a JSON
        object), "content_hash": str}``.

    Raises:
        RecordError (or ``voice.error``): not a dict, missing/blank id or text, bad
            source, chunk or metadata.
    """
    rid, text, source, chunk, meta, ch = _fields(record, i, label, voice, default_source)
    return {"id": rid, "text": text, "source": source, "chunk": chunk, "metadata": meta,
            "content_hash": ch}
