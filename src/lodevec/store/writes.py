"""Writes: the upsert strategy and deletes, each commit reported to the resident tier.

**Upserts.** Every row is validated first (:func:`~lodevec.store.records.records_to_table`),
then written with one merge-insert ("when matched update all, when not matched insert
all") per ``batch_rows`` rows.  A large upsert to a local database first takes the
collection's write lock (``flock``), finds which ids are already stored (from the
resident copy or one read of the id column), appends the new rows with one streamed
``add`` and merge-inserts the rest: about twice the throughput of merge-insert alone
(numbers in docs/performance.md).  Every lodevec writer takes the lock, so no other
lodevec process inserts an id between the check and the append; writers that bypass
lodevec should stick to merge-insert.

**Concurrency.** Commit conflicts that LanceDB does not resolve itself are retried with
bounded exponential backoff (:meth:`~lodevec.store._lance.Table.call`); ``id`` being the
table's primary key makes two processes inserting one new id conflict rather than both
commit it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import errors
from ._lance import Table
from .query import chunks, in_filter
from .records import records_to_table

__all__ = ["Writer", "DEFAULT_BATCH_ROWS"]

#: rows per merge-insert: every write is one fragment + one table version
DEFAULT_BATCH_ROWS = 10_000
#: an upsert at least this large checks which ids exist and appends the new rows with
#: ``add`` (faster than merge-insert); smaller ones merge-insert
_APPEND_MIN_ROWS = 2000
#: rows per record batch streamed to ``add`` (small batches encode faster than one big one)
_APPEND_CHUNK = 4096
#: the id check reads the whole id column when the table has at most this many rows per
#: upserted row (else the upsert merge-inserts)
_ID_SCAN_RATIO = 50


class Writer:
    """A collection's upserts and deletes.

    Args:
        table: its :class:`~lodevec.store._lance.Table` (``table.tier`` hears of each commit).
        schema: its columns, as :func:`records_to_table` builds them.
    """

    def __init__(self, table: Table, schema: pa.Schema):
        self._t = table
        self._schema = schema

    def upsert(self, records, embeddings: np.ndarray | None, batch_rows: int) -> dict:
        """See :meth:`lodevec.store.Collection.upsert`."""
        t = self._t
        table = records_to_table(records, self._schema, embeddings=embeddings, collection=t.name)
        n = table.num_rows
        out = {"inserted": 0, "updated": 0, "written": n, "batches": 0}
        if n == 0:
            return out
        step = max(1, int(batch_rows))
        with t.lock:
            if t.lock.exclusive:  # (the flock, or the S3 lease: see lodevec.store.lease)
                table = self._append_new(table, out, scan=n >= _APPEND_MIN_ROWS)
            for off in range(0, table.num_rows, step):
                batch = table.slice(off, step)
                before = t.version_if_resident()
                res = t.call("upsert", lambda b=batch: (
                    t.handle.merge_insert("id").when_matched_update_all()
                    .when_not_matched_insert_all().execute(b)))
                t.advance(before, res, "upsert", batch)
                out["inserted"] += int(getattr(res, "num_inserted_rows", 0) or 0)
                out["updated"] += int(getattr(res, "num_updated_rows", 0) or 0)
                out["batches"] += 1
        return out

    def _append_new(self, table: pa.Table, out: dict, scan: bool) -> pa.Table:
        """Append the rows whose ids are not stored with one ``add``; return the others
        (to merge-insert).  Call with the write lock held: no lodevec writer can insert
        one of these ids between the check and the append.  ``scan``: read the id column
        when no current resident copy knows the ids (worth it for large upserts only)."""
        t = self._t
        n = table.num_rows
        existing = self._existing_ids(table["id"], n, scan)
        if existing is None or len(existing) == n:
            return table
        if len(existing):  # (filtering copies every vector: only when needed)
            is_new = pc.invert(pc.is_in(table["id"], value_set=existing))
            new, rest = table.filter(is_new), table.filter(pc.invert(is_new))
        else:
            new, rest = table, table.slice(0, 0)
        if new.num_rows:
            before = t.version()
            # streamed in small batches LanceDB encodes and writes faster than one table
            res = t.call("append", lambda: t.handle.add(new.to_reader(max_chunksize=_APPEND_CHUNK)))
            t.advance(before, res, "upsert", new)
            out["inserted"] += new.num_rows
            out["batches"] += 1
        return rest

    def _existing_ids(self, ids: pa.ChunkedArray, n: int, scan: bool) -> pa.Array | None:
        """The stored ids among ``ids``, or None when finding them would cost more than
        merge-inserting (a big table and a comparatively small upsert)."""
        t = self._t
        if t.tier is not None and t.tier.loaded():
            known = t.tier.known_ids(ids.to_pylist())
            if known is not None:
                return pa.array(known, pa.string())
        if not scan:
            return None
        rows = t.count()
        if rows == 0:
            return pa.array([], pa.string())
        if rows > _ID_SCAN_RATIO * n:
            return None
        stored = t.scan(["id"])["id"]
        return pc.filter(stored, pc.is_in(stored, value_set=ids)).combine_chunks()

    def delete(self, ids: Sequence[str] | None, where: str | None) -> int:
        """See :meth:`lodevec.store.Collection.delete`."""
        if ids is None and where is None:
            raise errors.InputError("delete needs ids or a where filter (use where='true' for all)")
        if isinstance(ids, str):
            ids = [ids]
        if ids is not None:
            ids = list(dict.fromkeys(str(i) for i in ids))
            if not ids:
                return 0
            batches = [(in_filter("id", c), c) for c in chunks(ids)]
            if where:  # which of the ids match is known only to LanceDB
                batches = [(f"({f}) AND ({where})", None) for f, _ in batches]
        else:
            batches = [(where, None)]
        deleted = 0
        with self._t.lock:
            for f, known in batches:
                deleted += self._delete_filter(f, known, query=where)
        return deleted

    def delete_sources(self, sources: Iterable[str]) -> int:
        """See :meth:`lodevec.store.Collection.delete_sources`."""
        sources = list(dict.fromkeys(str(s) for s in sources))
        deleted = 0
        with self._t.lock:
            for c in chunks(sources):
                deleted += self._delete_filter(in_filter("source", c), None)
        return deleted

    def _delete_filter(self, f: str, ids: Sequence[str] | None, query: str | None = None) -> int:
        """One LanceDB delete; ``ids``: the ids it removes if known (else read first when
        the resident copy is current, so it can follow)."""
        t = self._t
        before = t.version()
        if ids is None and t.tier is not None and t.tier.is_current(before):
            ids = t.scan(["id"], f)["id"].to_pylist()
        res = t.call("delete", lambda: t.handle.delete(f), query=query)
        t.advance(before, res, "delete", ids)
        return int(getattr(res, "num_deleted_rows", 0) or 0)
