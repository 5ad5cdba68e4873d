"""Indexes: the vector index kinds (one entry each), the policy, and their maintenance.

Below ``rows * dim = flat_budget`` LanceDB's flat scan is fast enough and no vector index
is built.  Above it the default is IVF_HNSW_SQ (cosine), searched with a few IVF probes
and a refine step that re-ranks the best SQ candidates with the exact vectors: it reaches
recall@10 ~1.0 at a few ms.  IVF_PQ needs a much larger refine factor for 0.95 recall and
builds several times slower, so it is available but not the default (the numbers are in
docs/performance.md, "Store: why the defaults are what they are").  A BTree index on
``id`` keeps single upserts (merge-insert joins on ``id``) fast, one on ``source`` serves
the ingester's per-file lookups, and an FTS (BM25) index on ``text`` serves full-text and
hybrid search.  Rows written after an index was built are still found: LanceDB scans the
unindexed part flat.

**A new vector index kind** is one :class:`IndexKind` in :data:`VECTOR_KINDS`: its name,
how LanceDB lists it, its parameters, its build config and its query knobs.  The policy,
``stats``, ``lodevec bench search`` and the CLI read the kinds from that list.

This module imports neither pyarrow nor lancedb at load (the CLI reads the kinds at start).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import errors
from ._lance import VECTOR_COLUMN, folder_bytes, local_path, remove_staging_files

__all__ = ["IndexKind", "VECTOR_KINDS", "KIND_NAMES", "IndexPolicy", "id_index_refresh_after",
           "kind_name", "Indexes"]

VECTOR_INDEX = "embedding_idx"
ID_INDEX = "id_idx"
SOURCE_INDEX = "source_idx"
FTS_INDEX = "text_idx"
INDEX_PARAMS_KEY = "lodevec.index"
#: the query parameters ``stats`` and the bench report
QUERY_PARAM_KEYS = ("partitions", "nprobes", "ef", "refine_factor")
#: LanceDB's spelling of index kinds lodevec does not build (shown by ``stats`` as found)
_FOREIGN_KINDS = {"ivfhnswpq": "IVF_HNSW_PQ", "ivfflat": "IVF_FLAT", "ivfsq": "IVF_SQ"}


# ----------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class IndexKind:
    """One vector index kind.

    Attributes:
        name: the kind as ``create_index``, the policy, stats, the bench and the CLI spell it.
        listed_as: LanceDB's ``list_indices`` index_type, lowercased without ``_``.
        params: ``(policy, rows, dim) -> dict`` of build and query parameters (with
            ``kind``, ``partitions``, ``nprobes``, ``ef`` and ``refine_factor``).
        config: ``(params) -> lancedb.index config`` to build it with (cosine).
        knobs: ``(query builder, params, k) -> builder`` with the query parameters set.
    """

    name: str
    listed_as: str
    params: Callable[[IndexPolicy, int, int], dict]
    config: Callable[[dict], Any]
    knobs: Callable[[Any, dict, int], Any]


def _ivf_knobs(b, p: dict, k: int):
    b = b.nprobes(int(p["nprobes"]))
    if p.get("refine_factor"):
        b = b.refine_factor(int(p["refine_factor"]))
    return b


def _hnsw_sq_params(policy: IndexPolicy, rows: int, dim: int) -> dict:
    parts = max(1, min(4096, math.ceil(rows / policy.rows_per_partition)))
    nprobes = min(parts, max(policy.min_nprobes, math.ceil(parts * policy.probe_fraction)))
    return {"kind": "IVF_HNSW_SQ", "partitions": parts, "m": policy.m,
            "ef_construction": policy.ef_construction, "nprobes": nprobes,
            "ef": policy.ef, "refine_factor": policy.refine_factor}


def _hnsw_sq_config(p: dict):
    from lancedb.index import HnswSq

    return HnswSq(distance_type="cosine", num_partitions=p["partitions"], m=p["m"],
                  ef_construction=p["ef_construction"])


def _hnsw_sq_knobs(b, p: dict, k: int):
    b = _ivf_knobs(b, p, k)
    if p.get("ef"):  # HNSW search breadth: at least the candidates the refine step re-ranks
        b = b.ef(max(int(p["ef"]), k * int(p.get("refine_factor") or 1)))
    return b


def _pq_params(policy: IndexPolicy, rows: int, dim: int) -> dict:
    parts = max(1, min(4096, round(math.sqrt(rows))))
    sub = dim // 8 if dim % 8 == 0 else (dim // 4 if dim % 4 == 0 else 1)
    return {"kind": "IVF_PQ", "partitions": parts, "sub_vectors": sub,
            "nprobes": min(parts, max(policy.pq_nprobes, math.ceil(parts * 0.04))),
            "ef": None, "refine_factor": policy.pq_refine_factor}


def _pq_config(p: dict):
    from lancedb.index import IvfPq

    return IvfPq(distance_type="cosine", num_partitions=p["partitions"],
                 num_sub_vectors=p["sub_vectors"])


#: every vector index kind lodevec builds; the first is the policy's default
VECTOR_KINDS: tuple[IndexKind, ...] = (
    IndexKind("IVF_HNSW_SQ", "ivfhnswsq", _hnsw_sq_params, _hnsw_sq_config, _hnsw_sq_knobs),
    IndexKind("IVF_PQ", "ivfpq", _pq_params, _pq_config, _ivf_knobs),
)
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in VECTOR_KINDS)
_BY_NAME = {k.name: k for k in VECTOR_KINDS}


def get_kind(name: str) -> IndexKind:
    """The entry of kind ``name`` (upper case), or InputError listing the kinds."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise errors.InputError(
            f"unknown vector index kind {name!r}; use {' or '.join(KIND_NAMES)}") from None


def apply_knobs(builder, params: dict, k: int):
    """A LanceDB vector query ``builder`` with the query parameters of the index that
    ``params`` (:meth:`Indexes.vector_params`) describe, for a top-``k`` search."""
    return get_kind(params["kind"]).knobs(builder, params, k)


def kind_name(cfg) -> str:
    """Index type as LanceDB's create_index spells it (list_indices says e.g. 'IvfHnswSq')."""
    raw = str(getattr(cfg, "index_type", ""))
    t = raw.replace("_", "").lower()
    for k in VECTOR_KINDS:
        if k.listed_as == t:
            return k.name
    return _FOREIGN_KINDS.get(t, raw)


# ----------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class IndexPolicy:
    """When and how the vector index is built and searched (the reasons for the defaults
    are in docs/performance.md).

    Attributes:
        kind: one of :data:`KIND_NAMES` ("IVF_HNSW_SQ", the default, or "IVF_PQ").
        threshold: rows at which the vector index is built; None -> ``flat_budget // dim``
            (but at least 1000).
        flat_budget: ``rows * dim`` that a flat scan serves fast enough.
        rows_per_partition: IVF partition size for IVF_HNSW_SQ.
        m, ef_construction: HNSW graph parameters.
        ef: HNSW search breadth (raised to ``k * refine_factor`` when that is larger).
        refine_factor: candidates re-ranked with exact vectors = ``k * refine_factor``.
        probe_fraction, min_nprobes: nprobes = max(min_nprobes, ceil(partitions * fraction)).
        pq_refine_factor, pq_nprobes: the IVF_PQ equivalents.
        rebuild_fraction: ``maintain()`` rebuilds the vector index once the unindexed rows
            reach this fraction of the indexed ones (and at least ``threshold``): geometric
            growth keeps the total rebuild cost of a growing table linear.
        scalar_rebuild_rows: the id/source/FTS indexes are rebuilt once this many rows are
            unindexed, or ``rebuild_fraction`` of the indexed ones if fewer (they are cheap
            to rebuild).  Small writes also rebuild the id index after
            :func:`id_index_refresh_after` of them.
        compact_fragments: ``maintain()`` compacts the table (LanceDB ``optimize``: merge
            files, fold new rows into the indexes, prune versions older than 5 minutes) once
            it has this many fragments.  Every write adds one, and many small files slow
            scans and grow the version history; compaction rewrites the table, so it is
            not done more often.  (What fragments cost merge-inserts most, the scan of rows
            outside the id index, is bounded by :func:`id_index_refresh_after` instead.)
    """

    kind: str = VECTOR_KINDS[0].name
    threshold: int | None = None
    flat_budget: int = 15_000_000
    rows_per_partition: int = 6250
    m: int = 20
    ef_construction: int = 150
    ef: int = 80
    refine_factor: int = 2
    probe_fraction: float = 0.25
    min_nprobes: int = 2
    pq_refine_factor: int = 20
    pq_nprobes: int = 10
    rebuild_fraction: float = 0.25
    scalar_rebuild_rows: int = 10_000
    compact_fragments: int = 128

    def threshold_for(self, dim: int) -> int:
        if self.threshold is not None:
            return max(1, int(self.threshold))
        return max(1000, self.flat_budget // max(1, dim))

    def params_for(self, rows: int, dim: int, kind: str | None = None) -> dict:
        """Build and query parameters for an index over ``rows`` vectors."""
        return get_kind((kind or self.kind).upper()).params(self, rows, dim)


def id_index_refresh_after(rows: int) -> int:
    """Writes after which the id index is rebuilt.

    Each write leaves a fragment outside the id index that every later merge-insert or
    delete scans, so their cost grows by a fixed step per write, while rebuilding the
    index costs a fixed time per row.  Rebuilding after ``w`` writes, when the scans paid
    so far (growing as ``w**2 / 2`` steps) match the rebuild, keeps the total within twice
    the best schedule: ``w = sqrt(rows / 256)`` (20 at 100k rows, 63 at 1M), at least 4.
    The measured step and rebuild cost are in docs/performance.md.
    """
    return max(4, math.isqrt(max(0, int(rows)) // 256))


#: upserted rows between automatic ``maintain()`` checks
_MAINTAIN_EVERY_ROWS = 1000
#: ... or upserts (each adds a fragment, which ``maintain`` compacts past a limit)
_MAINTAIN_EVERY_WRITES = 32


# ----------------------------------------------------------------------------- maintenance
class Indexes:
    """A collection's indexes: listing (cached per version), builds, maintenance, compaction.

    Args:
        table: the collection's :class:`~lodevec.store._lance.Table`.
        policy: the :class:`IndexPolicy`.
        dim: the vector length.
    """

    def __init__(self, table, policy: IndexPolicy, dim: int):
        self._t = table
        self.policy = policy
        self.dim = dim
        self._state: tuple[int, dict] | None = None
        # rows and writes since the last maintain, our writes since the id index was
        # built, and the row count as last seen: they decide when maintenance runs
        self._unmaintained = 0
        self._writes_unmaintained = 0
        self._id_index_lag = 0
        self._rows_hint: int | None = None

    def state(self) -> dict:
        """``{"indexes": {name: LanceDB index config}, "vector_params": dict | None}``,
        cached per table version (a search costs one version check)."""
        t = self._t
        version = t.handle.version
        if self._state is None or self._state[0] != version:
            idx = {i.name: i for i in t.call("list indexes", t.handle.list_indices)}
            params = None
            if VECTOR_INDEX in idx:
                raw = (t.handle.schema.field(VECTOR_COLUMN).metadata or {}).get(
                    INDEX_PARAMS_KEY.encode())
                params = json.loads(raw) if raw else None
                if params is None or params.get("kind") != kind_name(idx[VECTOR_INDEX]):
                    rows = idx[VECTOR_INDEX].num_indexed_rows or 0
                    params = self.policy.params_for(rows, self.dim, kind_name(idx[VECTOR_INDEX]))
            self._state = (version, {"indexes": idx, "vector_params": params})
        return self._state[1]

    def has(self, name: str) -> bool:
        return name in self.state()["indexes"]

    # -- after an upsert
    def after_upsert(self, rows: int, out: dict, auto: bool) -> None:
        """Count an upsert (``out``: its result) and run what is due when ``auto``."""
        self._unmaintained += rows
        self._writes_unmaintained += 1
        self._id_index_lag += out["batches"]
        if self._rows_hint is not None:
            self._rows_hint += out["inserted"]
        # the index check lists indexes (its cost grows with the fragment count): run it per
        # ~1000 rows written, not per single-row upsert
        if auto:
            if (self._unmaintained >= _MAINTAIN_EVERY_ROWS
                    or self._writes_unmaintained >= _MAINTAIN_EVERY_WRITES):
                self.maintain()
            elif self._id_index_due():
                self.build_id()

    def _id_index_due(self) -> bool:
        """Whether our writes since the id index was built call for rebuilding it."""
        if self._id_index_lag < id_index_refresh_after(0):  # below the minimum: no count
            return False
        if self._rows_hint is None:
            self._rows_hint = self._t.count()
        return self._id_index_lag >= id_index_refresh_after(self._rows_hint)

    # -- builds
    def _scalar_builders(self) -> tuple:
        return ((ID_INDEX, self.build_id), (SOURCE_INDEX, self._build_source),
                (FTS_INDEX, self.build_fts))

    def ensure_scalar(self) -> None:
        idx = self.state()["indexes"]
        for name, build in self._scalar_builders():
            if name not in idx:
                build()

    def _build_scalar(self, what: str, column: str, config, name: str) -> None:
        t = self._t
        with t.preserving(1):
            t.call(what, lambda: t.handle.create_index(column, config=config, replace=True, name=name))

    def build_id(self) -> None:
        from lancedb.index import BTree

        # merge-insert and delete join on id through this index; rows written since it was
        # built are scanned instead (see id_index_refresh_after)
        self._build_scalar("build id index", "id", BTree(), ID_INDEX)
        self._id_index_lag = 0

    def _build_source(self) -> None:
        from lancedb.index import BTree

        # the ingester looks up / deletes by source once per file
        self._build_scalar("build source index", "source", BTree(), SOURCE_INDEX)

    def build_fts(self) -> None:
        from lancedb.index import FTS

        # positions make quoted phrase queries work
        self._build_scalar("build full-text index", "text", FTS(with_position=True), FTS_INDEX)

    def build_vector(self, kind: str | None = None) -> dict:
        """(Re)build the vector index over all current rows now; returns its parameters."""
        t = self._t
        rows = t.count()
        if rows < 256:
            raise errors.StoreError(
                f"{t.uri}: collection {t.name!r} has {rows} rows; a vector index needs >= 256")
        p = self.policy.params_for(rows, self.dim, kind)
        config = get_kind(p["kind"]).config(p)
        t0 = time.perf_counter()
        with t.preserving(2):
            with warnings.catch_warnings():  # "many duplicate vectors" k-means hints on tiny tables
                warnings.simplefilter("ignore")
                t.call("build vector index", lambda: t.handle.create_index(
                    VECTOR_COLUMN, config=config, replace=True, name=VECTOR_INDEX))
            p = dict(p, rows_at_build=rows, build_s=round(time.perf_counter() - t0, 3))
            # the query parameters travel with the table (field metadata), for every process
            t.call("record index parameters", lambda: t.handle.update_field_metadata(
                {"path": VECTOR_COLUMN, "metadata": {INDEX_PARAMS_KEY: json.dumps(p)}}))
        self._state = None
        return p

    def drop_vector(self) -> None:
        t = self._t
        if VECTOR_INDEX in self.state()["indexes"]:
            with t.preserving(1):
                t.call("drop vector index", lambda: t.handle.drop_index(VECTOR_INDEX))
            self._state = None

    def vector_params(self) -> dict | None:
        """The vector index's build and query parameters (None: no vector index)."""
        return self.state()["vector_params"]

    # -- maintenance
    def maintain(self, compact: bool = True) -> dict:
        """See :meth:`lodevec.store.Collection.maintain` (call with the write lock held)."""
        done: dict[str, str] = {}
        self._unmaintained = self._writes_unmaintained = 0
        state = self.state()
        idx = state["indexes"]
        rows = self._rows_hint = self._t.count()
        threshold = self.policy.threshold_for(self.dim)
        vec = idx.get(VECTOR_INDEX)
        if vec is None:
            if rows >= max(threshold, 256):
                self.build_vector()
                done["vector_index"] = "created"
        else:
            unindexed = vec.num_unindexed_rows or 0
            if unindexed >= max(threshold, self.policy.rebuild_fraction * (vec.num_indexed_rows or 0)):
                self.build_vector(state["vector_params"]["kind"] if state["vector_params"] else None)
                done["vector_index"] = "rebuilt"
        for name, build in self._scalar_builders():
            cfg = idx.get(name)
            if cfg is None or (cfg.num_unindexed_rows or 0) >= min(
                    self.policy.scalar_rebuild_rows,
                    max(1, self.policy.rebuild_fraction * (cfg.num_indexed_rows or 0))):
                build()
                done[name] = "created" if cfg is None else "rebuilt"
        if compact:
            frags = self.fragments()
            if frags >= self.policy.compact_fragments:
                # unreferenced files of killed writes go too where the write lock
                # (which compact holds) keeps every lodevec writer out
                self.compact(timedelta(minutes=5), self._t.lock.path is not None)
                done["compacted"] = f"{frags} -> {self.fragments()} fragments"
        if done:
            self._state = None
        return done

    def fragments(self) -> int:
        return int(self._t.stats().get("fragment_stats", {}).get("num_fragments") or 0)

    def compact(self, cleanup_older_than: timedelta | None, delete_unverified: bool) -> None:
        t = self._t
        # compaction renumbers rows in an unknown number of commits: the resident copy reloads
        with t.preserving(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LanceDB warns on cleanup_older_than=0 (documented)
            t.call("optimize", lambda: t.handle.optimize(
                cleanup_older_than=cleanup_older_than, delete_unverified=delete_unverified))
            if delete_unverified and t.lock.path is not None:  # (preserving holds the lock)
                remove_staging_files(local_path(t.handle.uri))
        self._state = None

    def footprint(self, local: bool) -> dict:
        """Versions, fragments and bytes of the table (files on disk when ``local``)."""
        t = self._t
        st = t.stats()
        size = (folder_bytes(local_path(t.handle.uri)) if local
                else int(st.get("total_bytes") or 0))
        return {"versions": len(t.call("list versions", t.handle.list_versions)),
                "fragments": int(st.get("fragment_stats", {}).get("num_fragments") or 0),
                "bytes": size}

    def describe(self, rows: int) -> dict:
        """The ``index``, ``fts_index`` and ``id_index`` entries of ``stats``."""
        state = self.state()
        idx = state["indexes"]
        vec = idx.get(VECTOR_INDEX)
        index: dict[str, Any] = {"type": None, "indexed_rows": 0, "unindexed_rows": rows,
                                 "threshold": self.policy.threshold_for(self.dim)}
        if vec is not None:
            index.update(type=kind_name(vec), indexed_rows=int(vec.num_indexed_rows or 0),
                         unindexed_rows=int(vec.num_unindexed_rows or 0))
            params = state["vector_params"] or {}
            index.update({k: params.get(k) for k in QUERY_PARAM_KEYS})

        def coverage(cfg) -> dict | None:
            return None if cfg is None else {"indexed_rows": int(cfg.num_indexed_rows or 0),
                                              "unindexed_rows": int(cfg.num_unindexed_rows or 0)}
        return {"index": index, "fts_index": coverage(idx.get(FTS_INDEX)),
                "id_index": coverage(idx.get(ID_INDEX))}
