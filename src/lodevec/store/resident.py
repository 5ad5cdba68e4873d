"""The resident search tier: a collection's vectors and rows held in memory, searched by
an int8 scan re-ranked in float32, and kept exactly at one table version.

Why: LanceDB has a per-query floor of a few milliseconds whatever the index, and its
flat scan of a large table is far slower.  A copy in memory, scanned as u8 codes (1 byte
per element, AVX-512 VNNI, see ``cython_kernels/lv_vscan.h``) is several times faster;
the best ``8k + 64`` candidates are re-ranked with the float32 vectors, so returned
scores are exact cosines and recall@10 against exact search is 1.0 on the bench data
(numbers in docs/performance.md, "Store: why the defaults are what they are").

Consistency: a :class:`Snapshot` is the collection *at one table version*.  The
:class:`ResidentTier` answers only when the table's latest version equals the
snapshot's; the store's own writes, reported to :meth:`ResidentTier.after_write`, are
applied to the snapshot when no other commit came between (the version moved by
exactly the store's own commits).  Anything else -- another process writing, an
operation of unknown effect -- makes the snapshot stale: searches fall back to LanceDB
(always current) while :class:`ResidentTier` reloads a new snapshot in a background
thread.  A stale snapshot is never searched.  ``where`` filters are still evaluated by
LanceDB; the tier caches the matching rows per filter and version.

Memory: ``rows * dim * 5`` bytes of vectors (float32 + u8 codes) plus the rows' text;
the tier is not loaded above the database's ``resident_budget``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import kernels

__all__ = ["Snapshot", "ResidentTier", "TableSource", "candidate_count"]

#: cached ``where`` filter results per collection (row slots at one version)
_WHERE_CACHE = 32


def candidate_count(k: int) -> int:
    """Int8-scan candidates re-ranked in float32 for a top-``k`` query."""
    return 8 * k + 64


def _unit_rows(mat: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; ``mat`` itself when they already are (embeddings are
    stored normalised: no copy of the whole matrix)."""
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat, dtype=np.float64))
    if mat.dtype == np.float32 and mat.flags.c_contiguous and np.all(np.abs(norms - 1.0) < 1e-6):
        return mat
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(mat / norms[:, None].astype(np.float32), dtype=np.float32)


def _columns(table: pa.Table, dim: int) -> tuple[np.ndarray, list, list, list, list]:
    """The store's Arrow rows as (vectors (n, dim), texts, sources, chunks, metadata),
    with the store's defaults for missing values."""
    n = table.num_rows
    mat = table["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return (mat.reshape(n, dim), table["text"].to_pylist(),
            [s or "" for s in table["source"].to_pylist()],
            [int(c or 0) for c in table["chunk"].to_pylist()],
            [m or "{}" for m in table["metadata"].to_pylist()])


class Snapshot:
    """A collection's rows at one table ``version``: unit vectors, their u8 codes, payload.

    Rows live in *slots*; deleting leaves a dead slot (masked out of every scan) until
    :meth:`compact` runs (automatically once a quarter of the slots are dead).
    Not thread-safe by itself: :class:`ResidentTier` serialises access.
    """

    def __init__(self, dim: int, version: int):
        self.dim = int(dim)
        self.version = int(version)
        self.n = 0  # slots in use (alive or dead)
        self.dead = 0
        self._vecs = np.empty((0, self.dim), np.float32)
        self._codes = np.empty((0, self.dim), np.uint8)
        self._scales = np.empty(0, np.float32)
        self._alive = np.empty(0, bool)
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.sources: list[str] = []
        self.chunks: list[int] = []
        self.metas: list[str] = []
        self.slot: dict[str, int] = {}
        self._ids_arrow: pa.Array | None = None  # ids as Arrow, for filter joins (lazy)

    @classmethod
    def from_arrow(cls, table: pa.Table, dim: int, version: int) -> Snapshot:
        """A snapshot of ``table`` (the collection's columns) at ``version``."""
        snap = cls(dim, version)
        n = table.num_rows
        ids = table["id"].to_pylist()
        slot = dict(zip(ids, range(n), strict=True))
        if len(slot) != n:  # a repeated id (written around lodevec): last one wins, row by row
            for off in range(0, n, 65536):
                snap.upsert(table.slice(off, 65536))
            return snap
        # one pass per column, no per-row Python work beyond the lists themselves
        mat, snap.texts, snap.sources, snap.chunks, snap.metas = _columns(table, snap.dim)
        snap._vecs = _unit_rows(mat)
        snap._codes, snap._scales = kernels.quantize_codes(snap._vecs)
        snap._alive = np.ones(n, bool)
        snap.ids, snap.slot, snap.n = ids, slot, n
        return snap

    # -- size
    def __len__(self) -> int:
        return self.n - self.dead

    @property
    def nbytes(self) -> int:
        """Approximate memory held (arrays plus ~100 bytes of Python objects per row)."""
        text = sum(len(t) for t in self.texts) + sum(len(m) for m in self.metas)
        return (self._vecs.nbytes + self._codes.nbytes + self._scales.nbytes
                + self._alive.nbytes + text + 100 * self.n)

    # -- writes
    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = self._vecs.shape[0]
        if need <= cap and self._vecs.flags.writeable:  # (loaded vectors may be read-only)
            return
        cap = max(need, int(cap * 1.5) + 1024)
        for name, shape, dtype in (("_vecs", (cap, self.dim), np.float32),
                                   ("_codes", (cap, self.dim), np.uint8),
                                   ("_scales", (cap,), np.float32), ("_alive", (cap,), bool)):
            old = getattr(self, name)
            new = np.zeros(shape, dtype)
            new[:self.n] = old[:self.n]
            setattr(self, name, new)

    def upsert(self, table: pa.Table) -> None:
        """Insert or replace rows by id (``table``: the store's validated Arrow rows)."""
        m = table.num_rows
        if m == 0:
            return
        ids = table["id"].to_pylist()
        mat, texts, sources, chunks, metas = _columns(table, self.dim)
        unit = _unit_rows(mat)
        codes, scales = kernels.quantize_codes(unit)
        self._reserve(m)
        self._ids_arrow = None
        slots = np.empty(m, np.int64)
        for j, rid in enumerate(ids):
            s = self.slot.get(rid)
            if s is None:
                s = self.n
                self.n += 1
                self.slot[rid] = s
                self.ids.append(rid)
                self.texts.append(texts[j])
                self.sources.append(sources[j])
                self.chunks.append(chunks[j])
                self.metas.append(metas[j])
            else:
                self.texts[s], self.sources[s] = texts[j], sources[j]
                self.chunks[s], self.metas[s] = chunks[j], metas[j]
            slots[j] = s
        self._vecs[slots] = unit
        self._codes[slots] = codes
        self._scales[slots] = scales
        self._alive[slots] = True

    def delete(self, ids: Iterable[str]) -> int:
        """Remove rows by id (unknown ids are ignored); returns rows removed."""
        removed = 0
        self._ids_arrow = None
        for rid in ids:
            s = self.slot.pop(rid, None)
            if s is not None:
                self._alive[s] = False
                # "" is never an id: a dead slot cannot match a lookup by id
                self.ids[s] = self.texts[s] = self.metas[s] = ""
                removed += 1
        self.dead += removed
        if self.dead > max(1024, self.n // 4):
            self.compact()
        return removed

    def compact(self) -> None:
        """Drop dead slots (renumbers slots)."""
        keep = np.flatnonzero(self._alive[:self.n])
        self._vecs = np.ascontiguousarray(self._vecs[keep])
        self._codes = np.ascontiguousarray(self._codes[keep])
        self._scales = np.ascontiguousarray(self._scales[keep])
        self._alive = np.ones(len(keep), bool)
        for name in ("ids", "texts", "sources", "chunks", "metas"):
            col = getattr(self, name)
            setattr(self, name, [col[i] for i in keep])
        self.n, self.dead = len(keep), 0
        self.slot = {rid: i for i, rid in enumerate(self.ids)}
        self._ids_arrow = None

    # -- reads
    def slots_of(self, ids: Iterable[str]) -> np.ndarray:
        """Slots of the given ids that are present (int64)."""
        get = self.slot.get
        return np.fromiter((s for s in map(get, ids) if s is not None), np.int64)

    def slots_of_arrow(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """:meth:`slots_of` for an Arrow string array (one hash join in Arrow, faster than
        the Python loop)."""
        if self._ids_arrow is None or len(self._ids_arrow) != self.n:
            self._ids_arrow = pa.array(self.ids, pa.string())
        found = pc.index_in(ids, value_set=self._ids_arrow)
        return found.drop_null().to_numpy().astype(np.int64)

    def row(self, s: int) -> dict:
        return {"id": self.ids[s], "text": self.texts[s], "source": self.sources[s],
                "chunk": self.chunks[s], "metadata": self.metas[s]}

    def search(self, q: np.ndarray, k: int, rows: np.ndarray | None = None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` slots by cosine to ``q`` (any length > 0), and their exact cosines.

        Args:
            q: float32 (dim,) query.
            k: results wanted.
            rows: restrict the search to these slots (a filter's matches), or None.
            exact: score every row in float32 (a guaranteed exact top-k, slower) instead
                of re-ranking the int8 scan's best candidates.

        Returns:
            ``(slots, scores)``, best first; fewer than ``k`` when fewer rows qualify.
        """
        q = np.ascontiguousarray(q, dtype=np.float32)
        q = q / np.float32(np.linalg.norm(q))
        if exact:
            return self._exact_search(q, k, rows)
        qc, qsum, _ = kernels.quantize_query(q)
        alive = self._alive
        if rows is None:
            if self.n - self.dead == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            approx = kernels.scan_codes(qc, qsum, self._codes, self._scales, n=self.n)
            if self.dead:
                approx[~alive[:self.n]] = -np.inf
            pool = None
        else:
            rows = rows[alive[rows]] if rows.size else rows
            if rows.size == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            approx = kernels.scan_codes(qc, qsum, self._codes, self._scales, rows=rows)
            pool = rows
        c = min(approx.shape[0], candidate_count(k))
        cand = (np.argpartition(-approx, c - 1)[:c] if c < approx.shape[0]
                else np.arange(approx.shape[0]))
        if pool is not None:
            cand = pool[cand]
        elif self.dead:
            cand = cand[alive[cand]]
        scores = self._vecs[cand] @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return cand[top], scores[top]

    def _exact_search(self, q: np.ndarray, k: int, rows: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        # one float32 matrix-vector product over every slot, then the filter picks its
        # slots out of the scores (gathering the filter's vectors first is slower)
        scores = self._vecs[:self.n] @ q
        if rows is not None:
            pool = rows[self._alive[rows]]
        elif self.dead:
            pool = np.flatnonzero(self._alive[:self.n])
        else:
            pool = None
        if pool is not None:
            scores = scores[pool]
        if scores.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        c = min(k, scores.size)
        top = np.argpartition(-scores, c - 1)[:c] if c < scores.size else np.arange(c)
        top = top[np.argsort(-scores[top], kind="stable")]
        slots = top if pool is None else pool[top]
        return slots.astype(np.int64, copy=False), scores[top]




class TableSource(Protocol):
    """What the tier needs from the table it mirrors (the store's side of the contract)."""

    def load_pinned(self) -> tuple[pa.Table, int]:
        """Every row (the collection's columns) at the latest version, and that version."""

    def version(self) -> int:
        """The table's latest committed version."""

    def estimate_bytes(self) -> int:
        """Bytes a snapshot of the current table would take."""

    def ids_where(self, where: str) -> pa.ChunkedArray:
        """Ids of the rows matching the SQL filter ``where`` (LanceDB evaluates it)."""


class ResidentTier:
    """A collection's in-memory copy: searches it, applies our writes to it, reloads it.

    The one door to the resident copy: the snapshot and the lock that guards it are
    private.  The store asks :meth:`search` (None: not current, ask LanceDB),
    :meth:`known_ids` and :meth:`is_current`, and reports each of its commits with
    :meth:`after_write` (or :meth:`stale` when it cannot say what changed).

    Args:
        source: the table (:class:`TableSource`).
        dim: the vector length.
        budget: largest snapshot (bytes, estimated from rows before loading) to hold.
    """

    def __init__(self, source: TableSource, dim: int, budget: int):
        self._source = source
        self._dim = int(dim)
        self.budget = int(budget)
        self._lock = threading.RLock()  # guards the snapshot (searches and writes)
        self._snapshot: Snapshot | None = None
        self._loader: threading.Thread | None = None
        self._where_slots: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.loads = 0
        self._misses = 0
        self.last_error: str | None = None
        self.over_budget = False

    # -- reading
    def loaded(self) -> bool:
        """A snapshot exists (current or not)."""
        return self._snapshot is not None

    def is_current(self, version: int) -> bool:
        """A snapshot at ``version`` exists (starts no load)."""
        snap = self._snapshot  # read once: the background loader may replace it
        return snap is not None and snap.version == version

    def _current(self, version: int, *, start: bool = True) -> Snapshot | None:
        """The snapshot if it is at ``version`` (call with the lock held), else None;
        a missing or stale snapshot starts a background reload (``start``; the first load
        only from the second call on)."""
        snap = self._snapshot
        if snap is not None and snap.version == version:
            return snap
        # a process that searches once (a script) never pays for a load: the first load
        # starts at the second search; reloads after a change start at once
        if start:
            if self.loads or self._misses:
                self.reload_async()
            self._misses += 1
        return None

    def search(self, q: np.ndarray, k: int, where: str | None = None, exact: bool = False
               ) -> list[tuple[dict, float]] | None:
        """The top-``k`` ``(row, cosine)`` pairs, best first, when the copy is at the
        table's latest version; None otherwise (ask LanceDB; a reload may start).

        Rows are dicts with id, text, source, chunk and metadata (the stored JSON string).
        """
        version = self._source.version()
        with self._lock:
            snap = self._current(version)
            if snap is None:
                return None
            rows = None
            if where:
                rows = self._slots_where(snap, where)
                if rows is None:
                    return None
            slots, scores = snap.search(q, k, rows, exact)
            return [(snap.row(int(s)), float(c)) for s, c in zip(slots, scores, strict=True)]

    def _slots_where(self, snap: Snapshot, where: str) -> np.ndarray | None:
        """Slots of the rows matching ``where`` at the snapshot's version (LanceDB evaluates
        the SQL; the answer is cached per filter and version), None if the table moved."""
        key = (where, snap.version)
        rows = self._where_slots.get(key)
        if rows is not None:
            self._where_slots.move_to_end(key)
            return rows
        ids = self._source.ids_where(where)
        if self._source.version() != snap.version:
            return None
        rows = snap.slots_of_arrow(ids)
        self._where_slots[key] = rows
        while len(self._where_slots) > _WHERE_CACHE:
            self._where_slots.popitem(last=False)
        return rows

    def known_ids(self, ids: Sequence[str]) -> list[str] | None:
        """Those of ``ids`` that are stored, when the copy is current (else None; no load)."""
        if self._snapshot is None:
            return None
        with self._lock:
            snap = self._current(self._source.version(), start=False)
            if snap is None:
                return None
            slot = snap.slot
            return [i for i in ids if i in slot]

    # -- loading
    def reload_async(self) -> None:
        """Start loading a fresh snapshot in a daemon thread (no-op if one is running)."""
        with self._lock:
            if self._loader is not None and self._loader.is_alive():
                return
            self._loader = threading.Thread(target=self._reload_quietly, daemon=True,
                                            name="lodevec-resident-load")
            self._loader.start()

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except Exception as e:  # searches keep using LanceDB; the error is kept for stats
            self.last_error = f"{type(e).__name__}: {e}"

    def reload(self, attempts: int = 3) -> Snapshot | None:
        """Load a snapshot now and install it if still current; returns it (None when
        over budget or the table kept changing during ``attempts`` loads)."""
        for _ in range(max(1, attempts)):
            if self._source.estimate_bytes() > self.budget:
                self.over_budget = True
                with self._lock:
                    self._snapshot = None
                return None
            self.over_budget = False
            table, version = self._source.load_pinned()
            snap = Snapshot.from_arrow(table, self._dim, version)
            self.loads += 1
            with self._lock:
                if snap.version == self._source.version():
                    self._snapshot = snap
                    self.last_error = None
                    return snap
        return None

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background load to finish."""
        t = self._loader
        if t is not None:
            t.join(timeout)

    # -- writes
    def stale(self) -> None:
        """Forget the snapshot (something changed that it cannot replay)."""
        with self._lock:
            self._snapshot = None

    def after_write(self, before: int, after: int, op: str, payload=None,
                    commits: int = 1) -> None:
        """Apply a write of ours: the table went from ``before`` to ``after`` through
        ``commits`` commits of our own.

        Args:
            before, after: the table versions around the write.
            op: ``"upsert"`` (``payload``: the written Arrow rows), ``"delete"``
                (``payload``: the deleted ids, or None when unknown) or ``"none"`` (no
                rows changed: an index build).
            commits: the commits the write made.

        If the snapshot was at ``before`` and nothing else committed (``after == before +
        commits``), the write is applied and the snapshot moves to ``after``; otherwise
        (or when the effect is unknown) the snapshot is dropped and reloads on a search.
        """
        if op not in ("upsert", "delete", "none"):
            raise ValueError(f"unknown write {op!r}")
        with self._lock:
            snap = self._snapshot
            if snap is None:
                return
            known = op == "none" or payload is not None
            if known and snap.version == before and after == before + commits:
                if op == "upsert":
                    snap.upsert(payload)
                elif op == "delete":
                    snap.delete(payload)
                snap.version = after
            else:
                self._snapshot = None

    def info(self) -> dict:
        snap = self._snapshot
        return {"loaded": snap is not None, "version": None if snap is None else snap.version,
                "rows": 0 if snap is None else len(snap),
                "bytes": 0 if snap is None else snap.nbytes, "budget": self.budget,
                "over_budget": self.over_budget, "loads": self.loads,
                "loading": bool(self._loader is not None and self._loader.is_alive()),
                "error": self.last_error}
