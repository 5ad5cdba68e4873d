"""Records: the Arrow rows the store writes (each record checked by ``validation``).

One LanceDB table per collection, with the columns

==============  ==================================  =========================================
column          Arrow type                          meaning
==============  ==================================  =========================================
id              string (not null, primary key)      caller's key; upserts match on it
text            string                              the chunk text (full-text indexed)
source          string                              file path or other origin ("" if none)
chunk           int32                               index of the chunk within ``source``
metadata        string                              a JSON object
content_hash    string                              lets the ingester skip unchanged chunks
embedding       fixed_size_list<float32, dim>       the vector (cosine distance)
==============  ==================================  =========================================

A file chunk's metadata records where it is in its file: ``path``, ``line_start`` and
``line_end`` (1-based, inclusive), ``byte_start`` and ``byte_end`` (half-open, in the
file's encoding, named by ``encoding`` when not UTF-8); ``SearchResult`` lifts the four
positions into fields.  They live in the metadata object rather than in columns so
that tables written before them open, search and take writes unchanged (no schema
migration), and the resident tier carries them with no change.

``id`` is declared an (unenforced) primary key in its field metadata: LanceDB's
merge-insert then records the keys each commit inserts, so two processes inserting the
same new id conflict (and one retries) instead of silently committing a duplicate row,
which plain merge-insert on an ordinary column does.

:func:`validate_record` is the check every record passes (the store's dict path calls it
per record); :func:`records_to_table` turns a whole upsert (dicts or Arrow) into the
table's Arrow rows, checking vectors too.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import errors
from ..text.validity import is_blank
from ._lance import VECTOR_COLUMN
from .identity import schema_metadata
from .validation import INT32_MAX, _fields, content_hash, metadata_json, validate_record

__all__ = ["COLUMNS", "content_hash", "validate_record", "records_to_table", "table_schema",
           "parse_metadata"]

COLUMNS = ("id", "text", "source", "chunk", "metadata", "content_hash", VECTOR_COLUMN)
PK_KEY = "lance-schema:unenforced-primary-key:position"


def table_schema(dim: int, identity: Mapping) -> pa.Schema:
    """The schema of a new collection of ``dim``-d vectors made by model ``identity``."""
    return pa.schema([
        pa.field("id", pa.string(), nullable=False, metadata={PK_KEY: "1"}),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("chunk", pa.int32()),
        pa.field("metadata", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dim), nullable=False),
    ], metadata=schema_metadata(identity))


def parse_metadata(s: str | None) -> dict:
    """The stored metadata string as a dict (never raises: odd values are wrapped)."""
    if not s:
        return {}
    try:
        v = json.loads(s)
    except ValueError:
        return {"_raw": s}
    return v if isinstance(v, dict) else {"_value": v}


def records_to_table(records: Any, schema: pa.Schema, *, embeddings: np.ndarray | None = None,
                     collection: str = "") -> pa.Table:
    """An upsert's records as the collection's Arrow rows, every check done first.

    Args:
        records: dicts (see :func:`validate_record`, plus ``"embedding"`` unless
            ``embeddings`` is given) or a pyarrow Table / RecordBatch with those columns.
        schema: the collection's columns (:data:`COLUMNS`; the vector length is read here).
        embeddings: float32 (n, dim) vectors of dict records without an "embedding" key.
        collection: its name, for messages.

    Returns:
        A table of ``schema``; a repeated id keeps its last record.

    Raises:
        RecordError, DimensionError: the first bad record, named by position and id.
    """
    dim = int(schema.field(VECTOR_COLUMN).type.list_size)
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    if isinstance(records, pa.Table):
        if embeddings is not None:
            raise errors.InputError("pass embeddings inside the Arrow table, not separately")
        cols = _from_arrow(records, dim, collection)
    else:
        if isinstance(records, Mapping):
            raise errors.RecordError("upsert takes a list of records, not a single dict")
        # building ~6 objects per record makes the cyclic GC rescan all live records again
        # and again (halves throughput on big upserts); nothing here creates cycles
        enabled = gc.isenabled()
        gc.disable()
        try:
            cols = _from_dicts(list(records), embeddings, dim, collection)
        finally:
            if enabled:
                gc.enable()
    return _assemble(*cols, schema=schema)


def _from_dicts(records: list, embeddings: np.ndarray | None, dim: int, name: str) -> tuple:
    n = len(records)
    rows = [_fields(r, i, None) for i, r in enumerate(records)]
    ids, texts, sources, chunks, metas, hashes = (list(c) for c in zip(*rows, strict=True)) \
        if rows else ([], [], [], [], [], [])
    if embeddings is not None:
        mat = np.asarray(embeddings)
        if mat.ndim != 2 or mat.shape[0] != n or mat.shape[1] != dim:
            raise errors.DimensionError(
                f"embeddings have shape {mat.shape}; expected ({n}, {dim}) for collection "
                f"{name!r} (first id {ids[0] if ids else None!r})")
        return ids, texts, sources, chunks, metas, hashes, mat
    vecs = [r.get("embedding") for r in records]
    try:  # one C-level pass when every vector is well-formed
        with np.errstate(over="ignore"):  # too large for float32: inf, refused in _assemble
            if n and all(type(v) is np.ndarray for v in vecs):
                mat = np.stack(vecs).astype(np.float32, copy=False)  # much faster than asarray
            else:
                mat = np.asarray(vecs, dtype=np.float32) if n else np.zeros((0, dim), np.float32)
    except (ValueError, TypeError):
        mat = None
    if mat is None or mat.shape != (n, dim):
        _explain_bad_vector(vecs, ids, dim, name)
    return ids, texts, sources, chunks, metas, hashes, mat


def _explain_bad_vector(vecs: list, ids: list[str], dim: int, name: str) -> None:
    """Raise the error naming the first malformed embedding."""
    for i, v in enumerate(vecs):
        where = f"record {i} (id {ids[i]!r})"
        if v is None:
            raise errors.RecordError(f"{where}: 'embedding' is missing")
        shape = np.shape(v)
        if len(shape) != 1 or shape[0] != dim:
            got = shape[0] if len(shape) == 1 else shape
            raise errors.DimensionError(
                f"{where}: embedding has dimension {got}; collection {name!r} expects {dim}")
        try:
            np.asarray(v, dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise errors.RecordError(f"{where}: 'embedding' is not a vector of numbers: {e}") from None
    raise errors.RecordError("the embeddings are not vectors of numbers")


def _from_arrow(t: pa.Table, dim: int, name: str) -> tuple:
    names = set(t.column_names)
    missing = {"id", "text", VECTOR_COLUMN} - names
    if missing:
        raise errors.RecordError(f"the Arrow table lacks column(s) {sorted(missing)}")
    unknown = names - set(COLUMNS)
    if unknown:
        raise errors.RecordError(f"the Arrow table has unknown column(s) {sorted(unknown)}")
    n = t.num_rows
    try:
        ids_arr = pc.cast(t["id"], pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise errors.RecordError(f"column 'id' is not a string column: {e}") from None
    ids = ids_arr.to_pylist()
    for i, rid in enumerate(ids):
        if not rid:
            raise errors.RecordError(f"row {i}: 'id' is missing or empty")
    texts = t["text"].to_pylist()
    for i, text in enumerate(texts):
        if not isinstance(text, str) or is_blank(text):
            raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'text' is missing or empty")
    sources = [s or "" for s in t["source"].to_pylist()] if "source" in names else [""] * n
    if "chunk" in names:
        chunks = [0 if c is None else int(c) for c in t["chunk"].to_pylist()]
        for i, c in enumerate(chunks):
            if not 0 <= c <= INT32_MAX:
                raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'chunk' out of range")
    else:
        chunks = [0] * n
    metas = ([metadata_json(m, f"row {i} (id {ids[i]!r})")
              for i, m in enumerate(t["metadata"].to_pylist())] if "metadata" in names
             else ["{}"] * n)
    hashes = t["content_hash"].to_pylist() if "content_hash" in names else [None] * n
    hashes = [h if h else content_hash(texts[i]) for i, h in enumerate(hashes)]
    return ids, texts, sources, chunks, metas, hashes, _arrow_vectors(t, ids, dim, name)


def _arrow_vectors(t: pa.Table, ids: list[str], dim: int, name: str) -> np.ndarray:
    col = t[VECTOR_COLUMN].combine_chunks()
    if col.null_count:
        i = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
        raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'embedding' is null")
    if pa.types.is_fixed_size_list(col.type):
        if col.type.list_size != dim:
            raise errors.DimensionError(
                f"row 0 (id {ids[0] if ids else None!r}): embedding has dimension "
                f"{col.type.list_size}; collection {name!r} expects {dim}")
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lens != dim)
        if bad.size:
            i = int(bad[0])
            raise errors.DimensionError(
                f"row {i} (id {ids[i]!r}): embedding has dimension {int(lens[i])}; "
                f"collection {name!r} expects {dim}")
    else:
        raise errors.RecordError(f"column 'embedding' has type {col.type}; expected a list of floats")
    values = col.flatten()  # honours slicing offsets
    if values.null_count:
        raise errors.RecordError("an embedding contains null values")
    return values.to_numpy(zero_copy_only=False).reshape(t.num_rows, dim)


def _assemble(ids, texts, sources, chunks, metas, hashes, mat: np.ndarray, *,
              schema: pa.Schema) -> pa.Table:
    with np.errstate(over="ignore"):
        mat = np.ascontiguousarray(mat, dtype=np.float32)
    # one pass: a NaN/inf anywhere in a row makes its squared norm NaN/inf
    norms = np.einsum("ij,ij->i", mat, mat)
    if not np.isfinite(norms).all():
        i = int(np.flatnonzero(~np.isfinite(norms))[0])
        if not np.isfinite(mat[i]).all():
            raise errors.RecordError(f"record {i} (id {ids[i]!r}): embedding contains NaN or inf")
        # finite, but too large to square in float32: every cosine with it would be NaN
        raise errors.RecordError(f"record {i} (id {ids[i]!r}): embedding is too large "
                                 "(its norm overflows float32); normalise it")
    if (norms == 0).any():
        i = int(np.flatnonzero(norms == 0)[0])
        raise errors.RecordError(
            f"record {i} (id {ids[i]!r}): embedding is all zeros (no cosine direction)")
    if len(set(ids)) != len(ids):
        # merge-insert with repeated keys is undefined: keep each id's last record
        last = {rid: i for i, rid in enumerate(ids)}
        keep = sorted(last.values())
        ids, texts, sources, chunks, metas, hashes = (
            [col[i] for i in keep] for col in (ids, texts, sources, chunks, metas, hashes))
        mat = mat[keep]
    dim = int(schema.field(VECTOR_COLUMN).type.list_size)
    # the FixedSizeList wraps the flat float buffer: no per-row Python objects
    emb = pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1), type=pa.float32()), dim)
    return pa.Table.from_arrays([
        pa.array(ids, pa.string()), pa.array(texts, pa.string()),
        pa.array(sources, pa.string()), pa.array(chunks, pa.int32()),
        pa.array(metas, pa.string()), pa.array(hashes, pa.string()), emb,
    ], schema=schema)
