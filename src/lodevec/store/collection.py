"""A collection: the facade over one table's writes, reads, search, indexes and resident copy.

Each job lives in its own module (see :mod:`lodevec.store`); :class:`Collection`
composes them and is what callers hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import errors
from ..text.validity import surrogate_at
from . import query
from ._lance import VECTOR_COLUMN, ResidentSource, Table
from .identity import effective_dim
from .indexes import Indexes
from .query import Searcher, SearchResult
from .records import COLUMNS
from .writes import DEFAULT_BATCH_ROWS, Writer

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database

__all__ = ["Collection"]


class Collection:
    """One table: upserts, deletes, lookups, search and index maintenance.

    Obtain it from :meth:`Database.open` / :meth:`Database.create_or_open`.  The opened
    LanceDB table is cached; with the database's read consistency interval (0 locally) it
    still sees commits made by other processes.

    Attributes:
        name: collection name.
        uri: the database URI (folder).
        identity: the model identity recorded at creation.
        dim: vector length.
        policy: the :class:`IndexPolicy`.
        auto_index: whether ``upsert`` calls :meth:`maintain` (once ~1000 rows were
            written since the last check).
    """

    def __init__(self, db: Database, table, name: str, identity: dict):
        self.db = db
        self.name = name
        self.uri = db.uri
        self.identity = identity
        self.policy = db.index_policy
        self.auto_index = db.auto_index
        self.dim = int(table.schema.field(VECTOR_COLUMN).type.list_size)
        if effective_dim(identity) != self.dim:
            raise errors.StoreError(
                f"{self.uri}: collection {name!r} stores {self.dim}-d vectors but its recorded "
                f"model identity says {effective_dim(identity)}")
        lock = Path(self.uri) / ".lodevec-locks" / f"{name}.lock" if db.local else None
        self._t = Table(table, self.uri, name, lock)
        if not db.local:  # object stores: a cross-machine lease takes the flock's place
            from .lease import lease_for

            lease = lease_for(db, name)
            if lease is not None:
                # the cached handle may be read_consistency_interval (5 s) behind: a write
                # under the lease starts from the newest version, or its id check would
                # miss rows another writer just committed
                lease.on_acquire = lambda: self._t.handle.checkout_latest()
                self._t.lock = lease
        source = ResidentSource(self._t, lambda: db.open_table(name), self.dim)
        self._tier = None
        if db.resident:  # (imported here: the tier loads the compiled kernels)
            from .resident import ResidentTier

            self._tier = ResidentTier(source, self.dim, db.resident_budget)
        self._t.tier = self._tier
        self._indexes = Indexes(self._t, self.policy, self.dim)
        self._writer = Writer(self._t, pa.schema([table.schema.field(c) for c in COLUMNS]))
        self._searcher = Searcher(self._t, self._indexes, self.dim, self._tier)

    def __repr__(self) -> str:
        return f"Collection({self.uri!r}, {self.name!r}, dim={self.dim})"

    @property
    def table(self):
        """The underlying ``lancedb.table.LanceTable`` (for what this class does not cover)."""
        handle = self._t.handle
        return handle.lancedb_table() if hasattr(type(handle), "lancedb_table") else handle

    # -- writing
    def upsert(self, records: Sequence[Mapping] | pa.Table | pa.RecordBatch, *,
               embeddings: np.ndarray | None = None, batch_rows: int = DEFAULT_BATCH_ROWS) -> dict:
        """Insert or replace records by id.

        All records are validated before anything is written.  Rows are written with one
        merge-insert ("when matched update all, when not matched insert all") per
        ``batch_rows`` rows.  A repeated id within one call keeps its last record.
        Large upserts to a local database first find which ids exist (from the resident
        copy, or one read of the id column) and append the new rows with a single
        ``add`` under the collection's write lock (see :mod:`lodevec.store.writes`).

        Args:
            records: dicts ``{"id", "text", "source", "chunk", "metadata" (dict | JSON str
                | None), "content_hash" (None -> sha256 of text), "embedding" (sequence or
                float32 array of shape (dim,))}``, or a pyarrow Table / RecordBatch with
                those columns (``embedding`` as fixed_size_list or list of float).
            embeddings: optional float32 array of shape (n, dim) for dict records without
                an "embedding" key (the fast path: no per-row vectors in Python).
            batch_rows: rows per write.

        Returns:
            ``{"inserted": int, "updated": int, "written": int, "batches": int}``.

        Raises:
            RecordError: missing/empty id or text, bad metadata, NaN/inf or zero vector.
            DimensionError: a vector of the wrong length (message names id, expected, got).
        """
        out = self._writer.upsert(records, embeddings, batch_rows)
        if out["written"]:
            self._indexes.after_upsert(out["written"], out, self.auto_index)
        return out

    def delete(self, ids: Sequence[str] | None = None, where: str | None = None) -> int:
        """Delete rows by id and/or an SQL filter (both given: rows matching both).

        Args:
            ids: record ids (quoted safely).
            where: SQL filter, e.g. ``"source = 'a.txt'"``; ``"true"`` deletes everything.

        Returns:
            Number of rows deleted.
        """
        return self._writer.delete(ids, query.check_filter(where))

    def delete_sources(self, sources: Iterable[str]) -> int:
        """Delete every chunk of the given sources (vanished or skipped files); returns rows deleted."""
        return self._writer.delete_sources(sources)

    # -- reading
    def count(self, where: str | None = None) -> int:
        """Rows in the collection (matching ``where`` if given)."""
        return self._t.count(query.check_filter(where))

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[dict]:
        """Records by id, in the order asked (missing ids are left out).

        Returns:
            dicts with id, text, source, chunk, metadata (dict), content_hash and, with
            ``with_embedding``, embedding (float32 array of shape (dim,)).
        """
        return query.get_records(self._t, self.dim, ids, with_embedding)

    def hashes_for_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: content_hash}`` for those of ``ids`` that are stored."""
        return query.hashes_for_ids(self._t, ids)

    def hashes_for_source(self, source: str) -> dict[str, str]:
        """``{id: content_hash}`` of the chunks of ``source``."""
        return query.hashes_for_source(self._t, source)

    def hashes_by_source(self) -> dict[str, dict[str, str]]:
        """``{source: {id: content_hash}}`` for the whole table, in one scan (what an
        index run reads once, instead of one query per file)."""
        return query.hashes_by_source(self._t)

    def ids_for_source(self, source: str) -> list[str]:
        """Ids of the chunks of ``source`` (sorted by chunk index)."""
        return query.ids_for_source(self._t, source)

    def sources(self) -> set[str]:
        """The distinct sources stored."""
        return query.sources(self._t)

    def source_hashes(self) -> dict[str, set[str]]:
        """``{source: {content_hash, ...}}`` over the whole collection (one scan)."""
        return query.source_hashes(self._t)

    def search(self, vector: Sequence[float] | np.ndarray | None, k: int = 10,
               where: str | None = None, query_text: str | None = None,
               mode: str = "vector", exact: bool = False) -> list[SearchResult]:
        """The ``k`` best records for a query.

        Args:
            vector: query embedding, shape (dim,), any float dtype (needed for vector and
                hybrid modes; ignored by fts).
            k: number of results.
            where: SQL filter applied before ranking (prefilter), e.g. ``"source LIKE '%.md'"``.
            query_text: the query's text (needed for fts and hybrid).
            mode: "vector" (cosine; score = cosine similarity), "fts" (BM25 score on
                ``text``) or "hybrid" (both rankings fused by reciprocal rank fusion,
                k=60; score = sum of 1/(60 + rank)).
            exact: rank by cosine over every row (no index, no int8 pre-selection): a
                guaranteed exact top-k at the cost of a full scan (from the resident copy
                when loaded, else from LanceDB).

        Returns:
            SearchResults, best first.

        Raises:
            DimensionError: the vector has the wrong length.
            QueryError: ``where`` or ``query_text`` cannot be parsed.
        """
        if query_text is not None and surrogate_at(query_text) is not None:
            raise errors.QueryError("the query text is not valid Unicode (a lone surrogate)")
        return self._searcher.search(vector, k, query.check_filter(where), query_text, mode, exact)

    # -- resident copy
    def load_resident(self, wait: bool = True) -> dict:
        """Load the in-memory copy that serves vector searches (see ``Database(resident=)``).

        Args:
            wait: load now and return when done (else start a background load).

        Returns:
            :meth:`resident_info`.

        Raises:
            InputError: the database was opened with ``resident=False``.
        """
        if self._tier is None:
            raise errors.InputError(f"{self.uri}: collection {self.name!r} was opened with resident=False")
        if wait:
            self._tier.wait()
            self._tier.reload()
        else:
            self._tier.reload_async()
        return self.resident_info()

    def resident_info(self) -> dict:
        """State of the in-memory copy: loaded, version, rows, bytes, budget, loads..."""
        if self._tier is None:
            return {"loaded": False, "enabled": False}
        return dict(self._tier.info(), enabled=True)

    # -- indexes
    def build_vector_index(self, kind: str | None = None) -> dict:
        """(Re)build the vector index over all current rows now; returns its parameters.

        Args:
            kind: one of :data:`lodevec.store.indexes.KIND_NAMES`; None -> the policy's kind.
        """
        return self._indexes.build_vector(kind)

    def drop_vector_index(self) -> None:
        """Remove the vector index (searches become exact flat scans)."""
        self._indexes.drop_vector()

    def maintain(self) -> dict:
        """Keep indexes current; cheap when nothing is due (a count and an index listing).

        * no vector index and ``rows >= threshold`` -> build it;
        * unindexed rows >= max(threshold, rebuild_fraction * indexed) -> rebuild it;
        * id / source / FTS index missing, or ``min(scalar_rebuild_rows, rebuild_fraction *
          indexed)`` rows unindexed -> rebuild (cheap);
        * ``compact_fragments`` fragments or more -> compact (see :class:`IndexPolicy`).

        Returns:
            What was done, e.g. ``{"vector_index": "created", "id_index": "rebuilt",
            "compacted": "130 -> 2 fragments"}``.
        """
        with self._t.lock:  # two processes never build the same index at once
            return self._indexes.maintain()

    def optimize(self, cleanup_older_than: timedelta | float | None = timedelta(minutes=5),
                 delete_unverified: bool | None = None) -> dict:
        """Compact small files, fold new rows into every index, prune old versions.

        Runs :meth:`maintain` first (so a stale vector index is rebuilt rather than merged),
        then LanceDB's ``optimize``.  Heavy on big tables (compaction rewrites fragments):
        run it after large ingests, not per write (:meth:`maintain` runs it by itself once
        fragments pile up).

        Args:
            cleanup_older_than: keep versions newer than this (timedelta or seconds; 0 keeps
                only the latest, which breaks readers still on an older version in other
                processes; the default 5 minutes leaves them time to finish).
            delete_unverified: also delete unreferenced files younger than 7 days (what a
                killed write or optimize leaves behind; LanceDB keeps them that long
                because they may belong to a write still in progress).  None (the
                default): True on a local database, False on an object store.  Locally
                it is safe because optimize holds the collection's write lock, which
                every lodevec write takes (upserts, deletes, index builds, compaction),
                so no lodevec process is mid-write (the staging files of killed local
                writes, which LanceDB's cleanup never looks at, go too; LanceDB deletes every
                unreferenced file, whatever its age: a program writing to the table
                without lodevec's lock could lose a write in progress).  Object stores
                have no lock, so there only pass True when nothing else is writing.

        Returns:
            versions/fragments/bytes before and after, seconds, and what maintain did.
        """
        if cleanup_older_than is not None and not isinstance(cleanup_older_than, timedelta):
            cleanup_older_than = timedelta(seconds=float(cleanup_older_than))
        t0 = time.perf_counter()
        before = self._indexes.footprint(self.db.local)
        if delete_unverified is None:
            delete_unverified = self._t.lock.path is not None
        with self._t.lock:
            maintained = self._indexes.maintain(compact=False)
            self._indexes.compact(cleanup_older_than, delete_unverified)
        after = self._indexes.footprint(self.db.local)
        return {"versions_before": before["versions"], "versions_after": after["versions"],
                "fragments_before": before["fragments"], "fragments_after": after["fragments"],
                "bytes_before": before["bytes"], "bytes_after": after["bytes"],
                "maintained": maintained, "seconds": round(time.perf_counter() - t0, 3)}

    def version(self) -> int:
        """The current table version (every write makes one)."""
        return self._t.version()

    def stats(self) -> dict:
        """Rows, distinct sources, model identity, dim, index state, versions, size on disk."""
        fp = self._indexes.footprint(self.db.local)
        rows = self.count()
        index: dict[str, Any] = self._indexes.describe(rows)
        return {
            "collection": self.name, "uri": self.uri, "rows": rows,
            "sources": len(self.sources()), "dim": self.dim, "model": self.identity.get("model"),
            "identity": self.identity, **index,
            "version": self.version(), "versions": fp["versions"], "fragments": fp["fragments"],
            "size_bytes": fp["bytes"], "resident": self.resident_info(),
        }
