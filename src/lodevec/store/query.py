"""Reads: vector, full-text and hybrid search (reciprocal rank fusion), lookups by id and
source, and the SQL helpers they share.

Scores: vector mode -> cosine similarity (``1 - cosine distance``, higher is better);
fts mode -> BM25; hybrid mode -> reciprocal-rank-fusion score ``sum 1/(60 + rank)`` over
the vector and full-text rankings (ranks from 1; at most ``2/61``).

Vector searches ask the resident tier first (when the collection has one and it is at
the table's latest version) and LanceDB otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc

from .. import errors
from ._lance import VECTOR_COLUMN, Table
from .indexes import FTS_INDEX, Indexes, apply_knobs
from .records import parse_metadata

__all__ = ["SearchResult", "RRF_K", "MODES", "Searcher", "check_filter", "rrf_fuse", "sql_str",
           "in_filter"]

RESULT_COLUMNS = ["id", "text", "source", "chunk", "metadata"]
#: reciprocal rank fusion constant (Cormack et al. 2009)
RRF_K = 60
MODES = ("vector", "fts", "hybrid")
#: ids per ``IN (...)`` filter (long SQL lists parse slowly)
IN_CHUNK = 1000


def check_filter(where: str | None) -> str | None:
    """``where`` if it is one SQL expression: a statement separator (``;``) or a comment
    (``--``, ``/*``) outside a string literal or quoted name is refused, since the
    engine would otherwise ignore whatever follows it.

    Raises:
        QueryError: naming the filter and what was found.
    """
    if where is None or not any(c in where for c in ";-/"):
        return where
    quote, i, n = "", 0, len(where)
    while i < n:
        c = where[i]
        if quote:
            if c == quote:
                if where[i + 1:i + 2] == quote:  # '' inside '...' is a quote
                    i += 1
                else:
                    quote = ""
        elif c in "'\"`":
            quote = c
        elif c == ";" or where.startswith(("--", "/*"), i):
            what = "a statement separator ';'" if c == ";" else f"a comment {where[i:i + 2]!r}"
            raise errors.QueryError(f"the filter {where!r} has {what} outside a string literal; "
                                    "give one SQL expression (quote the text in '...')")
        i += 1
    return where


@dataclass(frozen=True)
class SearchResult:
    """One hit.

    Attributes:
        id: the record id.
        score: cosine similarity (vector), BM25 (fts) or RRF score (hybrid); higher is better.
        text: the chunk text.
        source: its origin (file path), "" if none.
        chunk: index of the chunk within ``source``.
        metadata: the record's metadata object.
        line_start, line_end: the chunk's first and last line in its file (1-based);
            None for records and for rows indexed before lodevec stored them.
        byte_start, byte_end: its half-open byte range in the file, or None.
    """

    id: str
    score: float
    text: str
    source: str
    chunk: int
    metadata: dict
    line_start: int | None = None
    line_end: int | None = None
    byte_start: int | None = None
    byte_end: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- SQL helpers
def sql_str(value: str) -> str:
    """An SQL string literal: quotes doubled, nothing else is special in DataFusion."""
    return "'" + str(value).replace("'", "''") + "'"


def in_filter(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def chunks(seq: Sequence, size: int = IN_CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def rrf_fuse(rankings: Sequence[Sequence[dict]], k: int) -> list[tuple[dict, float]]:
    """Reciprocal rank fusion: each row scores ``sum 1/(RRF_K + rank)`` over the rankings
    it appears in (rows matched by ``id``); ties go to the better single rank."""
    fused: dict[str, list] = {}
    for rows in rankings:
        for rank, row in enumerate(rows, 1):
            entry = fused.setdefault(row["id"], [0.0, rank, row])
            entry[0] += 1.0 / (RRF_K + rank)
            entry[1] = min(entry[1], rank)
    best = sorted(fused.values(), key=lambda e: (-e[0], e[1]))[:k]
    return [(row, score) for score, _, row in best]


#: where a file chunk is, recorded in its metadata by the indexer
POSITION_KEYS = ("line_start", "line_end", "byte_start", "byte_end")


def _hit(row: dict, score: float) -> SearchResult:
    meta = parse_metadata(row["metadata"])
    pos = {k: v for k in POSITION_KEYS
           if isinstance(v := meta.get(k), int) and not isinstance(v, bool)}
    return SearchResult(id=row["id"], score=score, text=row["text"], source=row["source"] or "",
                        chunk=int(row["chunk"] or 0), metadata=meta, **pos)


# ----------------------------------------------------------------------------- search
class Searcher:
    """A collection's searches.

    Args:
        table: its :class:`~lodevec.store._lance.Table`.
        indexes: its :class:`~lodevec.store.indexes.Indexes` (query knobs, the FTS index).
        dim: the vector length.
        tier: its resident tier, or None.
    """

    def __init__(self, table: Table, indexes: Indexes, dim: int, tier=None):
        self._t = table
        self._indexes = indexes
        self.dim = dim
        self._tier = tier

    def search(self, vector, k: int, where: str | None, query_text: str | None,
               mode: str, exact: bool) -> list[SearchResult]:
        """See :meth:`lodevec.store.Collection.search`."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise errors.InputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if mode not in MODES:
            raise errors.InputError(f"unknown search mode {mode!r}; use vector, fts or hybrid")
        if mode in ("fts", "hybrid") and (not isinstance(query_text, str) or not query_text.strip()):
            raise errors.InputError(f"{mode} search needs query_text")
        if mode == "vector":
            return [_hit(r, score) for r, score in
                    self._vector_hits(self._query_vector(vector), k, where, exact)]
        if mode == "fts":
            return [_hit(r, float(r["_score"])) for r in self._fts_rows(query_text, k, where)]
        q = self._query_vector(vector)
        n = max(2 * k, 20)  # candidates per ranking
        ranked = [[r for r, _ in self._vector_hits(q, n, where, exact)],
                  self._fts_rows(query_text, n, where)]
        return [_hit(row, score) for row, score in rrf_fuse(ranked, k)]

    def _query_vector(self, vector) -> np.ndarray:
        if vector is None:
            raise errors.InputError("vector search needs a query vector")
        try:
            q = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise errors.DimensionError(f"the query vector is not a vector of numbers: {e}") from None
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1 or q.shape[0] != self.dim:
            raise errors.DimensionError(
                f"query vector has dimension {q.shape[0] if q.ndim == 1 else q.shape}; "
                f"collection {self._t.name!r} in {self._t.uri} expects {self.dim}")
        if not np.isfinite(q).all() or not q.any():
            raise errors.InputError("the query vector contains NaN/inf or is all zeros")
        return q

    def _vector_hits(self, q: np.ndarray, k: int, where: str | None, exact: bool = False
                     ) -> list[tuple[dict, float]]:
        """(row, cosine similarity) pairs, best first: from the resident copy when it is at
        the table's latest version, else from LanceDB."""
        if self._tier is not None:
            hits = self._tier.search(q, k, where, exact)
            if hits is not None:
                return hits
        return [(r, 1.0 - float(r["_distance"])) for r in self._vector_rows(q, k, where, exact)]

    def _vector_rows(self, q: np.ndarray, k: int, where: str | None, exact: bool) -> list[dict]:
        t = self._t
        params = self._indexes.vector_params()

        def run():
            b = t.handle.search(q, vector_column_name=VECTOR_COLUMN).distance_type("cosine")
            if exact:
                b = b.bypass_vector_index()
            elif params is not None:
                b = apply_knobs(b, params, k)
            if where:
                b = b.where(where, prefilter=True)
            return b.limit(k).select(RESULT_COLUMNS + ["_distance"]).to_arrow().to_pylist()
        return t.call("vector search", run, query=where)

    def _fts_rows(self, text: str, k: int, where: str | None) -> list[dict]:
        if not self._indexes.has(FTS_INDEX):
            self._indexes.build_fts()
        t = self._t

        def run():
            b = t.handle.search(text, query_type="fts", fts_columns="text")
            if where:
                b = b.where(where, prefilter=True)
            return b.limit(k).select(RESULT_COLUMNS + ["_score"]).to_arrow().to_pylist()
        return t.call("full-text search", run, query=f"{text} | where: {where}" if where else text)


# ----------------------------------------------------------------------------- lookups
def get_records(t: Table, dim: int, ids: Sequence[str], with_embedding: bool) -> list[dict]:
    """See :meth:`lodevec.store.Collection.get`."""
    if isinstance(ids, str):
        ids = [ids]
    ids = [str(i) for i in ids]
    cols = ["id", "text", "source", "chunk", "metadata", "content_hash"]
    if with_embedding:
        cols.append(VECTOR_COLUMN)
    found: dict[str, dict] = {}
    for c in chunks(list(dict.fromkeys(ids))):
        tab = t.scan(cols, in_filter("id", c))
        vecs = None
        if with_embedding:
            vecs = tab[VECTOR_COLUMN].combine_chunks().flatten().to_numpy(
                zero_copy_only=False).reshape(-1, dim)
            tab = tab.drop_columns([VECTOR_COLUMN])
        for j, row in enumerate(tab.to_pylist()):
            row["metadata"] = parse_metadata(row["metadata"])
            if vecs is not None:
                row[VECTOR_COLUMN] = vecs[j].copy()
            found[row["id"]] = row
    return [found[i] for i in ids if i in found]


def hashes_for_ids(t: Table, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in chunks(list(dict.fromkeys(str(i) for i in ids))):
        tab = t.scan(["id", "content_hash"], in_filter("id", c))
        out.update(zip(tab["id"].to_pylist(), tab["content_hash"].to_pylist(), strict=True))
    return out


def hashes_for_source(t: Table, source: str) -> dict[str, str]:
    tab = t.scan(["id", "content_hash"], f"source = {sql_str(source)}")
    return dict(zip(tab["id"].to_pylist(), tab["content_hash"].to_pylist(), strict=True))


def hashes_by_source(t: Table) -> dict[str, dict[str, str]]:
    tab = t.scan(["id", "source", "content_hash"])
    out: dict[str, dict[str, str]] = {}
    for i, src, h in zip(tab["id"].to_pylist(), tab["source"].to_pylist(),
                         tab["content_hash"].to_pylist(), strict=True):
        out.setdefault(src, {})[i] = h
    return out


def ids_for_source(t: Table, source: str) -> list[str]:
    tab = t.scan(["id", "chunk"], f"source = {sql_str(source)}")
    pairs = sorted(zip(tab["chunk"].to_pylist(), tab["id"].to_pylist(), strict=True))
    return [i for _, i in pairs]


def sources(t: Table) -> set[str]:
    tab = t.scan(["source"])
    return set(pc.unique(tab["source"]).to_pylist()) - {None}


def source_hashes(t: Table) -> dict[str, set[str]]:
    tab = t.scan(["source", "content_hash"])
    out: dict[str, set[str]] = {}
    for s, h in zip(tab["source"].to_pylist(), tab["content_hash"].to_pylist(), strict=True):
        out.setdefault(s or "", set()).add(h)
    return out
