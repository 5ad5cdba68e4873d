"""The vector store: collections of text chunks and their embeddings in embedded LanceDB.

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

**Model identity.** The caller's identity dict (architecture, model file, digest, dim,
prompts...) is stored as JSON in the table's *schema metadata* (key ``lodevec.identity``).
It is part of the very manifest that creates the table, so the table and its identity
appear in one atomic commit (no sidecar that can be missing, stale or half-written, and
it travels with the table to object stores).  Opening with another digest, architecture
or dim raises :class:`~lodevec.errors.ModelMismatchError`.

**Concurrency.** ``id`` is declared an (unenforced) primary key in its field metadata:
LanceDB's merge-insert then records the keys each commit inserts, so two processes
inserting the same new id conflict (and one retries) instead of silently committing a
duplicate row, which plain merge-insert on an ordinary column does (measured: 1200 rows
for 900 ids with two writers).  Commit conflicts that LanceDB does not resolve itself are
retried here with bounded exponential backoff.

**Indexes.** Measured on this 2-core machine with 100k x 768 clustered unit vectors (see
:mod:`lodevec.search_bench`): LanceDB's flat scan costs ~1.5-4 ms per 1k rows at dim 768,
so below ``rows * dim = 15M`` (~20k rows at 768) no vector index is built.  Above it we
build IVF_HNSW_SQ (cosine; ~6k rows per IVF partition, HNSW m=20, ef_construction=150),
searched with nprobes = max(2, partitions/4), ef=80 and refine_factor=2 (re-ranks the
2k best SQ candidates with the exact vectors): p50 ~3-4 ms at recall@10 = 0.99-1.0, build
~30 s.  IVF_PQ (256 partitions, dim/8 sub-vectors) needed refine_factor=20 to pass 0.95
recall (4.8 ms) and 140-200 s to build, so it is available but not the default.  A BTree
index on ``id`` keeps single upserts (merge-insert joins on ``id``) at ~5 ms, one on
``source`` serves the ingester's per-file lookups, and an FTS
(BM25) index on ``text`` serves full-text and hybrid search.  Rows written after an index
was built are still found: LanceDB scans the unindexed part flat.

**Resident copy.** A long-lived process (the server, an application; not the one-shot
CLI) keeps each searched collection in memory (:mod:`lodevec.resident`): vector searches
(plain, ``where``-filtered, and the vector half of hybrid) scan int8 codes and re-rank
in float32, ~2.5 ms at 100k x 768 with recall@10 = 1.0, against LanceDB's ~7 ms through
its index and ~150+ ms flat.  It is used only at the table's latest version: this
process's own writes are applied to it; anything else (another process writing,
``optimize``) makes searches fall back to LanceDB while it reloads in the background.
``where`` filters are still evaluated by LanceDB (the matching ids are cached per filter
and version).

**Bulk upserts.** An upsert of >= 2000 rows to a local database takes the collection's
write lock (``flock``), finds which ids are already stored (from the resident copy or
one read of the id column), appends the new rows with one streamed ``add`` and
merge-inserts the rest: ~60k rows/s with per-record vectors and ~100k with an
``embeddings`` array at 100k x 768, against ~30k for merge-insert alone.  Every lodevec
writer takes the lock, so no other lodevec process inserts an id between the check and
the append; writers that bypass lodevec should stick to merge-insert.

Scores: vector mode -> cosine similarity (``1 - cosine distance``, higher is better);
fts mode -> BM25; hybrid mode -> reciprocal-rank-fusion score ``sum 1/(60 + rank)`` over
the vector and full-text rankings (ranks from 1; at most ``2/61``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import math
import os
import random
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import errors
from .resident import ResidentTier, Snapshot, snapshot_from_arrow

__all__ = [
    "Database", "Collection", "SearchResult", "IndexPolicy", "DEFAULT_COLLECTION",
    "RRF_K", "effective_dim",
]

DEFAULT_COLLECTION = "default"
IDENTITY_KEY = "lodevec.identity"
FORMAT_KEY = "lodevec.format"
FORMAT_VERSION = "1"
INDEX_PARAMS_KEY = "lodevec.index"
PK_KEY = "lance-schema:unenforced-primary-key:position"
VECTOR_COLUMN = "embedding"
VECTOR_INDEX = "embedding_idx"
ID_INDEX = "id_idx"
SOURCE_INDEX = "source_idx"
FTS_INDEX = "text_idx"
COLUMNS = ("id", "text", "source", "chunk", "metadata", "content_hash", VECTOR_COLUMN)
RESULT_COLUMNS = ["id", "text", "source", "chunk", "metadata"]
#: reciprocal rank fusion constant (Cormack et al. 2009)
RRF_K = 60
#: rows per merge-insert: every write is one fragment + one table version
DEFAULT_BATCH_ROWS = 10_000
#: ids per ``IN (...)`` filter (long SQL lists parse slowly)
_IN_CHUNK = 1000
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_CONFLICT_RE = re.compile(r"conflict|contention|concurrent|retryable|too many retries", re.I)
_INT32_MAX = 2**31 - 1
#: upserted rows between automatic ``maintain()`` checks
_MAINTAIN_EVERY_ROWS = 1000
#: ... or upserts (each adds a fragment, which ``maintain`` compacts past a limit)
_MAINTAIN_EVERY_WRITES = 32
#: largest resident snapshot by default (bytes): 100k x 768 takes ~0.4 GB
DEFAULT_RESIDENT_BUDGET = 2 << 30
#: an upsert at least this large checks which ids exist and appends the new rows with
#: ``add`` (~2x faster than merge-insert); smaller ones merge-insert
_APPEND_MIN_ROWS = 2000
#: rows per record batch streamed to ``add`` (measured: 4-8k is ~2x faster than 16k+)
_APPEND_CHUNK = 4096
#: the id check reads the whole id column when the table has at most this many rows per
#: upserted row (else the upsert merge-inserts)
_ID_SCAN_RATIO = 50
#: rows per batch of scalar-column scans
_SCAN_BATCH = 65536
#: cached ``where`` filter results per collection (row slots at one version)
_WHERE_CACHE = 32


# ----------------------------------------------------------------------------- results
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
    """

    id: str
    score: float
    text: str
    source: str
    chunk: int
    metadata: dict

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class IndexPolicy:
    """When and how the vector index is built and searched (defaults measured, see module doc).

    Attributes:
        kind: "IVF_HNSW_SQ" (default) or "IVF_PQ".
        threshold: rows at which the vector index is built; None -> ``flat_budget // dim``
            (but at least 1000).
        flat_budget: ``rows * dim`` that a flat scan serves fast enough (~20 ms here).
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
            unindexed, or ``rebuild_fraction`` of the indexed ones if fewer (cheap: ~40 ms
            / ~40 ms / 0.6 s at 100k rows).  Small writes also rebuild the id index after
            :func:`id_index_refresh_after` of them.
        compact_fragments: ``maintain()`` compacts the table (LanceDB ``optimize``: merge
            files, fold new rows into the indexes, prune versions older than 5 minutes) once
            it has this many fragments.  Every write adds one, and many small files slow
            scans and grow the version history; compaction rewrites the table (15.6 s at
            100k x 768 with an IVF_HNSW_SQ index), so it is not done more often.  (What
            fragments cost merge-inserts most, the scan of rows outside the id index, is
            bounded by :func:`id_index_refresh_after` instead: 6.8 ms at 52 fragments.)
    """

    kind: str = "IVF_HNSW_SQ"
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
        kind = (kind or self.kind).upper()
        if kind == "IVF_HNSW_SQ":
            parts = max(1, min(4096, math.ceil(rows / self.rows_per_partition)))
            nprobes = min(parts, max(self.min_nprobes, math.ceil(parts * self.probe_fraction)))
            return {"kind": kind, "partitions": parts, "m": self.m,
                    "ef_construction": self.ef_construction, "nprobes": nprobes,
                    "ef": self.ef, "refine_factor": self.refine_factor}
        if kind == "IVF_PQ":
            parts = max(1, min(4096, round(math.sqrt(rows))))
            sub = dim // 8 if dim % 8 == 0 else (dim // 4 if dim % 4 == 0 else 1)
            return {"kind": kind, "partitions": parts, "sub_vectors": sub,
                    "nprobes": min(parts, max(self.pq_nprobes, math.ceil(parts * 0.04))),
                    "ef": None, "refine_factor": self.pq_refine_factor}
        raise errors.InputError(f"unknown vector index kind {kind!r}; use IVF_HNSW_SQ or IVF_PQ")


# ----------------------------------------------------------------------------- helpers
def id_index_refresh_after(rows: int) -> int:
    """Writes after which the id index is rebuilt.

    Each write leaves a fragment outside the id index that every later merge-insert or
    delete scans (~0.19 ms each at 100k x 768: 7 ms with the index current, 28 ms after
    111 writes), while rebuilding the index costs ~0.37 us per row (37 ms at 100k).
    Rebuilding after ``w`` writes, when the scans paid so far (~0.19 * w**2 / 2 ms)
    match the rebuild, keeps the total within twice the best schedule:
    ``w = sqrt(rows / 256)`` (20 at 100k rows, 63 at 1M), at least 4.
    """
    return max(4, math.isqrt(max(0, int(rows)) // 256))


def effective_dim(identity: Mapping) -> int | None:
    """The stored vector length an identity implies: ``matryoshka_dim`` if set, else ``dim``."""
    for key in ("matryoshka_dim", "dim"):
        v = identity.get(key)
        if v is not None and not isinstance(v, bool):
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


def _normalize_identity(identity: Any) -> dict:
    if not isinstance(identity, Mapping):
        raise errors.InputError(f"a model identity must be a dict, got {type(identity).__name__}")
    ident = dict(identity)
    dim = effective_dim(ident)
    if dim is None or dim <= 0:
        raise errors.DimensionError(f"the model identity has no valid dimension: {ident!r}")
    try:
        json.dumps(ident)
    except (TypeError, ValueError) as e:
        raise errors.InputError(f"the model identity is not JSON-serialisable: {e}") from None
    return ident


def _describe(ident: Mapping) -> str:
    digest = str(ident.get("digest") or "?")
    return (f"{ident.get('model') or '?'} (architecture={ident.get('architecture') or '?'}, "
            f"dim={effective_dim(ident)}, digest={digest[:16]})")


def _identity_diffs(stored: Mapping, given: Mapping) -> list[str]:
    diffs = [key for key in ("architecture", "digest")
             if stored.get(key) is not None and given.get(key) is not None
             and stored.get(key) != given.get(key)]
    if effective_dim(stored) != effective_dim(given):
        diffs.append("dim")
    return diffs


def _sql_str(value: str) -> str:
    """An SQL string literal: quotes doubled, nothing else is special in DataFusion."""
    return "'" + str(value).replace("'", "''") + "'"


def _in_filter(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_sql_str(v) for v in values)})"


def _chunks(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def _folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:  # pruned while we walk
                pass
    return total


def content_hash(text: str) -> str:
    """The ``content_hash`` column: sha256 of the text's UTF-8 bytes (hex)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _metadata_json(meta: Any, where: str) -> str:
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
    if not meta:
        return "{}"
    try:
        return json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise errors.RecordError(f"{where}: metadata is not JSON-serialisable: {e}") from None


def _parse_metadata(s: str | None) -> dict:
    if not s:
        return {}
    try:
        v = json.loads(s)
    except ValueError:
        return {"_raw": s}
    return v if isinstance(v, dict) else {"_value": v}


def _is_conflict(exc: BaseException) -> bool:
    return bool(_CONFLICT_RE.search(str(exc)))


def _lancedb():
    # index statistics without the IVF centroids (the coming default; without this, lance
    # logs a warning to stderr on every index listing)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    import lancedb  # deferred: importing lancedb costs ~1 s

    return lancedb


# ----------------------------------------------------------------------------- database
class Database:
    """A LanceDB database: a local folder (created on first write) or an object-store URI.

    Args:
        uri: folder path, ``file://`` URI or an object-store URI (``s3://...``, ``gs://...``,
            ``az://...``) passed straight to ``lancedb.connect``.
        storage_options: credentials/endpoints for object stores (passed to LanceDB).
        read_consistency_interval: how stale a cached table may be w.r.t. writes by other
            processes.  None -> 0 (check every read, ~0.1 ms) locally, 5 s on object stores.
        index_policy: vector index policy for the collections opened from here.
        auto_index: let upserts run :meth:`Collection.maintain` (every ~1000 rows written).
        resident: keep each searched collection's vectors and rows in memory
            (:mod:`lodevec.resident`) and answer vector searches from there: ~2 ms at
            100k x 768 instead of LanceDB's 8 ms (index) or 150 ms (flat scan).  Loaded in
            a background thread from the second search on (LanceDB answers meanwhile) or by
            :meth:`Collection.load_resident`.  Worth it for processes that search many
            times (the server, an application); a one-shot CLI search turns it off.
        resident_budget: bytes a collection's resident copy may take (estimated from its
            row count as ``rows * (5 * dim + 200)``); larger collections use LanceDB only.
    """

    def __init__(self, uri: str | os.PathLike, *, storage_options: dict | None = None,
                 read_consistency_interval: timedelta | None = None,
                 index_policy: IndexPolicy | None = None, auto_index: bool = True,
                 resident: bool = True, resident_budget: int = DEFAULT_RESIDENT_BUDGET):
        uri = os.fspath(uri)
        if not uri:
            raise errors.InputError("the database path is empty")
        self.local = _is_local(uri)
        self.uri = str(_local_path(uri)) if self.local else uri
        self.storage_options = storage_options
        if read_consistency_interval is None:
            read_consistency_interval = timedelta(0) if self.local else timedelta(seconds=5)
        self.read_consistency_interval = read_consistency_interval
        self.index_policy = index_policy or IndexPolicy()
        self.auto_index = auto_index
        self.resident = bool(resident)
        self.resident_budget = int(resident_budget)
        self._conn = None

    def __repr__(self) -> str:
        return f"Database({self.uri!r})"

    # -- connection
    def _connect(self):
        if self._conn is None:
            try:
                self._conn = _lancedb().connect(
                    self.uri, read_consistency_interval=self.read_consistency_interval,
                    storage_options=self.storage_options)
            except Exception as e:
                raise errors.StoreError(f"{self.uri}: cannot open the database: {e}") from e
        return self._conn

    def _missing_locally(self) -> bool:
        return self.local and not Path(self.uri).is_dir()

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise errors.InputError(
                f"invalid collection name {name!r}: use letters, digits, '_', '-' and '.' "
                "(at most 128, not starting with '.' or '-')")
        return name

    # -- listing
    def collection_names(self) -> list[str]:
        """Names of the collections (tables) in the database, sorted; [] if it does not exist."""
        if self._missing_locally():
            return []
        conn = self._connect()
        names: list[str] = []
        token = None
        try:
            while True:
                resp = conn.list_tables(page_token=token)
                names.extend(resp.tables)
                token = resp.page_token
                if not token:
                    break
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot list collections: {e}") from e
        return sorted(names)

    def exists(self, name: str = DEFAULT_COLLECTION) -> bool:
        """Whether collection ``name`` exists (never creates anything)."""
        return self._check_name(name) in self.collection_names()

    # -- open / create
    def open(self, name: str = DEFAULT_COLLECTION, identity: Mapping | None = None) -> Collection:
        """Open an existing collection.

        Args:
            name: collection name.
            identity: the model identity in use; if given it must match the recorded one
                (digest, architecture, dim) or ModelMismatchError is raised.  None opens
                without a check (``stats``, ``delete``...) and exposes the recorded identity.

        Raises:
            CollectionNotFoundError: the database or the collection does not exist.
            ModelMismatchError: ``identity`` differs from the recorded model.
        """
        self._check_name(name)
        given = _normalize_identity(identity) if identity is not None else None
        if self._missing_locally():
            raise errors.CollectionNotFoundError(
                f"{self.uri}: no database here (index something first, or check --db)")
        table = self._open_table(name)
        return self._collection(name, table, given)

    def create_or_open(self, name: str = DEFAULT_COLLECTION, identity: Mapping | None = None
                       ) -> Collection:
        """Open collection ``name``, creating it (and the database) with ``identity`` if needed.

        Raises:
            ModelMismatchError: the existing collection was made with another model.
        """
        self._check_name(name)
        if identity is None:
            raise errors.InputError("create_or_open needs the model identity")
        given = _normalize_identity(identity)
        if self.local:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        schema = self._schema(effective_dim(given), given)
        table = None
        for attempt in range(6):
            try:
                table = self._open_table(name)
                break
            except errors.CollectionNotFoundError:
                pass
            try:
                table = conn.create_table(name, schema=schema)
                break
            except Exception as e:  # a concurrent creator won the race: open its table
                if attempt == 5:
                    raise errors.StoreError(
                        f"{self.uri}: cannot create collection {name!r}: {e}") from e
                time.sleep(0.05 * (attempt + 1))
        coll = self._collection(name, table, given)
        coll._ensure_scalar_indexes()
        return coll

    def _open_table(self, name: str):
        conn = self._connect()
        try:
            return conn.open_table(name)
        except ValueError as e:
            if "not found" in str(e).lower() or "does not exist" in str(e).lower():
                raise errors.CollectionNotFoundError(
                    f"{self.uri}: collection {name!r} does not exist "
                    f"(collections: {', '.join(self.collection_names()) or 'none'})") from None
            raise errors.StoreError(f"{self.uri}: cannot open collection {name!r}: {e}") from e
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot open collection {name!r}: {e}") from e

    def _collection(self, name: str, table, given: dict | None) -> Collection:
        meta = table.schema.metadata or {}
        raw = meta.get(IDENTITY_KEY.encode())
        if raw is None:
            raise errors.StoreError(
                f"{self.uri}: table {name!r} was not created by lodevec (no model identity)")
        stored = json.loads(raw)
        if given is not None:
            diffs = _identity_diffs(stored, given)
            if diffs:
                raise errors.ModelMismatchError(
                    f"{self.uri}: collection {name!r} was created with model {_describe(stored)}, "
                    f"but model {_describe(given)} is in use ({', '.join(diffs)} differ); "
                    "search with the recorded model, or index into another collection or database")
        return Collection(self, table, name, stored)

    @staticmethod
    def _schema(dim: int, identity: Mapping) -> pa.Schema:
        return pa.schema([
            pa.field("id", pa.string(), nullable=False, metadata={PK_KEY: "1"}),
            pa.field("text", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("chunk", pa.int32()),
            pa.field("metadata", pa.string()),
            pa.field("content_hash", pa.string()),
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dim), nullable=False),
        ], metadata={IDENTITY_KEY: json.dumps(dict(identity), sort_keys=True),
                     FORMAT_KEY: FORMAT_VERSION})

    def drop(self, name: str) -> None:
        """Delete collection ``name`` and its files.

        Raises:
            CollectionNotFoundError: it does not exist.
        """
        if not self.exists(name):
            raise errors.CollectionNotFoundError(f"{self.uri}: collection {name!r} does not exist")
        try:
            self._connect().drop_table(name)
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot drop collection {name!r}: {e}") from e


def _unchanged(_snap: Snapshot) -> None:
    """The resident snapshot's update for a write that changes no rows."""


class _WriteLock:
    """Serialises the writes of lodevec processes to one collection (re-entrant).

    LanceDB's optimistic commits keep the table consistent by themselves; the lock exists
    for the check-then-append of bulk upserts (no other writer may insert an id between
    the check and the append) and so that two processes never build the same index at
    once.  An ``flock`` on ``<db>/.lodevec-locks/<name>.lock`` for local databases (it
    is released if the process dies); object stores have no lock, and bulk upserts
    there always merge-insert.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> _WriteLock:
        self._mutex.acquire()
        if self._depth == 0 and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                self._mutex.release()
                raise errors.StoreError(f"cannot open the write lock {self.path}: {e}") from e
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._mutex.release()


# ----------------------------------------------------------------------------- collection
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
        self._table = table
        field = table.schema.field(VECTOR_COLUMN)
        self.dim = int(field.type.list_size)
        if effective_dim(identity) != self.dim:
            raise errors.StoreError(
                f"{self.uri}: collection {name!r} stores {self.dim}-d vectors but its recorded "
                f"model identity says {effective_dim(identity)}")
        self._schema = pa.schema([table.schema.field(c) for c in COLUMNS])
        self._state: tuple[int, dict] | None = None
        self._unmaintained = 0
        self._writes_unmaintained = 0
        # own writes since the id index was built, and the row count as last seen: they
        # decide when the id index is refreshed
        self._id_index_lag = 0
        self._rows_hint: int | None = None
        self._wlock = _WriteLock(Path(self.uri) / ".lodevec-locks" / f"{name}.lock"
                                 if db.local else None)
        self._tier = (ResidentTier(self._load_snapshot, self.version, db.resident_budget,
                                   self._resident_estimate) if db.resident else None)
        self._where_slots: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return f"Collection({self.uri!r}, {self.name!r}, dim={self.dim})"

    @property
    def table(self):
        """The underlying ``lancedb.table.LanceTable`` (for what this class does not cover)."""
        return self._table

    # -- plumbing
    def _call(self, what: str, fn: Callable[[], Any], *, query: str | None = None,
              retries: int = 8) -> Any:
        """Run a LanceDB call; retry commit conflicts (bounded backoff), map errors."""
        for attempt in range(retries):
            try:
                return fn()
            except errors.LodevecError:
                raise
            except Exception as e:
                if _is_conflict(e) and attempt < retries - 1:
                    # jittered exponential backoff: 50 ms, 100 ms, ... capped at 2 s
                    time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                    continue
                if query is not None and isinstance(e, ValueError):
                    raise errors.QueryError(
                        f"{self.uri}: collection {self.name!r}: bad query or filter "
                        f"{query!r}: {e}") from None
                raise errors.StoreError(f"{self.uri}: collection {self.name!r}: {what} failed: {e}") from e
        raise AssertionError("unreachable")

    def _indexes(self) -> dict:
        """Index configs by name, cached per table version (a search costs one version check)."""
        version = self._table.version
        if self._state is None or self._state[0] != version:
            idx = {i.name: i for i in self._call("list indexes", self._table.list_indices)}
            params = None
            if VECTOR_INDEX in idx:
                raw = (self._table.schema.field(VECTOR_COLUMN).metadata or {}).get(
                    INDEX_PARAMS_KEY.encode())
                params = json.loads(raw) if raw else None
                if params is None or params.get("kind") != _kind_name(idx[VECTOR_INDEX]):
                    rows = idx[VECTOR_INDEX].num_indexed_rows or 0
                    params = self.policy.params_for(rows, self.dim, _kind_name(idx[VECTOR_INDEX]))
            self._state = (version, {"indexes": idx, "vector_params": params})
        return self._state[1]

    def _scan(self, columns: list[str], where: str | None = None) -> pa.Table:
        # scalar columns in big batches: LanceDB's default small batches each cross a thread
        # (measured 100k rows, 50k matching, 52 fragments: 32 ms per filtered id scan
        # against 15.5 ms)
        batch = None if VECTOR_COLUMN in columns else _SCAN_BATCH

        def run():
            q = self._table.search().select(columns)
            if where:
                q = q.where(where)
            return q.limit(None).to_batches(batch_size=batch).read_all()
        return self._call("scan", run, query=where)

    # -- writing
    def upsert(self, records: Sequence[Mapping] | pa.Table | pa.RecordBatch, *,
               embeddings: np.ndarray | None = None, batch_rows: int = DEFAULT_BATCH_ROWS) -> dict:
        """Insert or replace records by id.

        All records are validated before anything is written.  Rows are written with one
        merge-insert ("when matched update all, when not matched insert all") per
        ``batch_rows`` rows.  A repeated id within one call keeps its last record.
        Large upserts to a local database first find which ids exist (from the resident
        copy, or one read of the id column) and append the new rows with a single
        ``add`` under the collection's write lock: ~2x the throughput of merge-insert.

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
        table = self._validated_table(records, embeddings)
        n = table.num_rows
        out = {"inserted": 0, "updated": 0, "written": n, "batches": 0}
        if n == 0:
            return out
        step = max(1, int(batch_rows))
        with self._wlock:
            if self._wlock.path is not None:
                table = self._append_new(table, out, scan=n >= _APPEND_MIN_ROWS)
            for off in range(0, table.num_rows, step):
                batch = table.slice(off, step)
                before = self._version_if_resident()
                res = self._call("upsert", lambda b=batch: (
                    self._table.merge_insert("id").when_matched_update_all()
                    .when_not_matched_insert_all().execute(b)))
                self._advance(before, res, lambda snap, b=batch: snap.upsert(b))
                out["inserted"] += int(getattr(res, "num_inserted_rows", 0) or 0)
                out["updated"] += int(getattr(res, "num_updated_rows", 0) or 0)
                out["batches"] += 1
        self._unmaintained += n
        self._writes_unmaintained += 1
        self._id_index_lag += out["batches"]
        if self._rows_hint is not None:
            self._rows_hint += out["inserted"]
        # the index check lists indexes (its cost grows with the fragment count): run it per
        # ~1000 rows written, not per single-row upsert
        if self.auto_index:
            if (self._unmaintained >= _MAINTAIN_EVERY_ROWS
                    or self._writes_unmaintained >= _MAINTAIN_EVERY_WRITES):
                self.maintain()
            elif self._id_index_due():
                self._build_id_index()
        return out

    def _id_index_due(self) -> bool:
        """Whether our writes since the id index was built call for rebuilding it."""
        if self._id_index_lag < id_index_refresh_after(0):  # below the minimum: no count
            return False
        if self._rows_hint is None:
            self._rows_hint = self.count()
        return self._id_index_lag >= id_index_refresh_after(self._rows_hint)

    def _append_new(self, table: pa.Table, out: dict, scan: bool) -> pa.Table:
        """Append the rows whose ids are not stored with one ``add``; return the others
        (to merge-insert).  Call with the write lock held: no lodevec writer can insert
        one of these ids between the check and the append.  ``scan``: read the id column
        when no current resident copy knows the ids (worth it for large upserts only)."""
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
            before = self.version()
            # streamed in small batches LanceDB encodes and writes 2-3x faster than one table
            res = self._call("append", lambda: self._table.add(new.to_reader(max_chunksize=_APPEND_CHUNK)))
            self._advance(before, res, lambda snap: snap.upsert(new))
            out["inserted"] += new.num_rows
            out["batches"] += 1
        return rest

    def _existing_ids(self, ids: pa.ChunkedArray, n: int, scan: bool) -> pa.Array | None:
        """The stored ids among ``ids``, or None when finding them would cost more than
        merge-inserting (a big table and a comparatively small upsert)."""
        if self._snapshot_loaded():
            with self._tier.lock:
                snap = self._tier.current(self.version(), start=False)
                if snap is not None:
                    return pa.array([i for i in ids.to_pylist() if i in snap.slot], pa.string())
        if not scan:
            return None
        rows = self.count()
        if rows == 0:
            return pa.array([], pa.string())
        if rows > _ID_SCAN_RATIO * n:
            return None
        stored = self._scan(["id"])["id"]
        return pc.filter(stored, pc.is_in(stored, value_set=ids)).combine_chunks()

    def _snapshot_loaded(self) -> bool:
        """A resident snapshot exists (current or not: callers compare versions)."""
        return self._tier is not None and self._tier.snapshot is not None

    def _version_if_resident(self) -> int:
        """The version before a write, read only when a snapshot could follow the write
        (saves a version check per small upsert); -1 makes any snapshot go stale."""
        return self.version() if self._snapshot_loaded() else -1

    def _advance(self, before: int, result: Any, apply: Callable[[Snapshot], None] | None,
                 commits: int = 1) -> None:
        """Tell the resident tier about a write of ours that started at version ``before``
        (``result``: LanceDB's result carrying the new version, or None to read it)."""
        if self._tier is None:
            return
        after = getattr(result, "version", None)
        after = self.version() if after is None else int(after)
        with self._tier.lock:
            self._tier.advance(before, after, commits, apply)

    @contextlib.contextmanager
    def _preserving(self, commits: int | None):
        """A write that changes no rows (index builds): the snapshot survives it when it
        made exactly ``commits`` commits (None: unknown, so the snapshot is dropped)."""
        with self._wlock:
            before = self.version()
            yield
            if commits is None:
                if self._tier is not None:
                    self._tier.stale()
            else:
                self._advance(before, None, _unchanged, commits)

    def _validated_table(self, records, embeddings) -> pa.Table:
        if isinstance(records, pa.RecordBatch):
            records = pa.Table.from_batches([records])
        if isinstance(records, pa.Table):
            if embeddings is not None:
                raise errors.InputError("pass embeddings inside the Arrow table, not separately")
            return self._from_arrow(records)
        if isinstance(records, Mapping):
            raise errors.RecordError("upsert takes a list of records, not a single dict")
        # building ~6 objects per record makes the cyclic GC rescan all live records again
        # and again (halves throughput at 100k records); nothing here creates cycles
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._from_dicts(list(records), embeddings)
        finally:
            if enabled:
                gc.enable()

    def _from_dicts(self, records: list, embeddings: np.ndarray | None) -> pa.Table:
        # hot path of every ingest: exact-type checks first, the general ones only on misses
        n = len(records)
        ids: list[str] = [""] * n
        texts: list[str] = [""] * n
        sources: list[str] = [""] * n
        chunks: list[int] = [0] * n
        metas: list[str] = ["{}"] * n
        hashes: list[str] = [""] * n
        vecs: list = [None] * n if embeddings is None else []
        for i, r in enumerate(records):
            if type(r) is not dict and not isinstance(r, Mapping):
                raise errors.RecordError(f"record {i}: expected a dict, got {type(r).__name__}")
            rid = r.get("id")
            if type(rid) is not str or not rid:
                if isinstance(rid, bool) or not isinstance(rid, (str, int, np.integer)) or rid == "":
                    raise errors.RecordError(f"record {i}: 'id' is missing or not a non-empty string")
                rid = str(rid)
            text = r.get("text")
            if type(text) is not str or not text or text.isspace():
                if not isinstance(text, str) or not text.strip():
                    raise errors.RecordError(f"record {i} (id {rid!r}): 'text' is missing or empty")
            source = r.get("source")
            if type(source) is not str:
                if source is None:
                    source = ""
                elif isinstance(source, (str, os.PathLike)):
                    source = os.fspath(source)
                else:
                    raise errors.RecordError(f"record {i} (id {rid!r}): 'source' must be a string")
            chunk = r.get("chunk", 0)
            if type(chunk) is not int or not 0 <= chunk <= _INT32_MAX:
                if chunk is None:
                    chunk = 0
                elif isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) \
                        or not 0 <= chunk <= _INT32_MAX:
                    raise errors.RecordError(
                        f"record {i} (id {rid!r}): 'chunk' must be an int in [0, 2^31)")
                chunk = int(chunk)
            meta = r.get("metadata")
            if meta is not None:
                metas[i] = _metadata_json(meta, f"record {i} (id {rid!r})")
            ch = r.get("content_hash")
            if type(ch) is not str or not ch:
                if ch is not None and ch != "" and not isinstance(ch, str):
                    raise errors.RecordError(f"record {i} (id {rid!r}): 'content_hash' must be a string")
                ch = ch or content_hash(text)
            ids[i], texts[i], sources[i], chunks[i], hashes[i] = rid, text, source, chunk, ch
            if embeddings is None:
                vecs[i] = r.get("embedding")
        if embeddings is not None:
            mat = np.asarray(embeddings)
            if mat.ndim != 2 or mat.shape[0] != n or mat.shape[1] != self.dim:
                raise errors.DimensionError(
                    f"embeddings have shape {mat.shape}; expected ({n}, {self.dim}) for collection "
                    f"{self.name!r} (first id {ids[0] if ids else None!r})")
        else:
            try:  # one C-level pass when every vector is well-formed
                if n and all(type(v) is np.ndarray for v in vecs):
                    mat = np.stack(vecs).astype(np.float32, copy=False)  # 10x asarray's speed
                else:
                    mat = np.asarray(vecs, dtype=np.float32) if n else np.zeros((0, self.dim), np.float32)
            except (ValueError, TypeError):
                mat = None
            if mat is None or mat.shape != (n, self.dim):
                self._explain_bad_vector(vecs, ids)
        return self._assemble(ids, texts, sources, chunks, metas, hashes, mat)

    def _explain_bad_vector(self, vecs: list, ids: list[str]) -> None:
        """Raise the error naming the first malformed embedding."""
        for i, v in enumerate(vecs):
            where = f"record {i} (id {ids[i]!r})"
            if v is None:
                raise errors.RecordError(f"{where}: 'embedding' is missing")
            shape = np.shape(v)
            if len(shape) != 1 or shape[0] != self.dim:
                got = shape[0] if len(shape) == 1 else shape
                raise errors.DimensionError(
                    f"{where}: embedding has dimension {got}; collection {self.name!r} expects {self.dim}")
            try:
                np.asarray(v, dtype=np.float32)
            except (ValueError, TypeError) as e:
                raise errors.RecordError(f"{where}: 'embedding' is not a vector of numbers: {e}") from None
        raise errors.RecordError("the embeddings are not vectors of numbers")

    def _from_arrow(self, t: pa.Table) -> pa.Table:
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
            if not isinstance(text, str) or not text.strip():
                raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'text' is missing or empty")
        sources = [s or "" for s in t["source"].to_pylist()] if "source" in names else [""] * n
        if "chunk" in names:
            chunks = [0 if c is None else int(c) for c in t["chunk"].to_pylist()]
            for i, c in enumerate(chunks):
                if not 0 <= c <= _INT32_MAX:
                    raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'chunk' out of range")
        else:
            chunks = [0] * n
        metas = ([_metadata_json(m, f"row {i} (id {ids[i]!r})")
                  for i, m in enumerate(t["metadata"].to_pylist())] if "metadata" in names
                 else ["{}"] * n)
        hashes = t["content_hash"].to_pylist() if "content_hash" in names else [None] * n
        hashes = [h if h else content_hash(texts[i]) for i, h in enumerate(hashes)]
        col = t[VECTOR_COLUMN].combine_chunks()
        if col.null_count:
            i = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
            raise errors.RecordError(f"row {i} (id {ids[i]!r}): 'embedding' is null")
        if pa.types.is_fixed_size_list(col.type):
            if col.type.list_size != self.dim:
                raise errors.DimensionError(
                    f"row 0 (id {ids[0] if ids else None!r}): embedding has dimension "
                    f"{col.type.list_size}; collection {self.name!r} expects {self.dim}")
        elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lens != self.dim)
            if bad.size:
                i = int(bad[0])
                raise errors.DimensionError(
                    f"row {i} (id {ids[i]!r}): embedding has dimension {int(lens[i])}; "
                    f"collection {self.name!r} expects {self.dim}")
        else:
            raise errors.RecordError(f"column 'embedding' has type {col.type}; expected a list of floats")
        values = col.flatten()  # honours slicing offsets
        if values.null_count:
            raise errors.RecordError("an embedding contains null values")
        mat = values.to_numpy(zero_copy_only=False).reshape(n, self.dim)
        return self._assemble(ids, texts, sources, chunks, metas, hashes, mat)

    def _assemble(self, ids, texts, sources, chunks, metas, hashes, mat: np.ndarray) -> pa.Table:
        mat = np.ascontiguousarray(mat, dtype=np.float32)
        # one pass: a NaN/inf anywhere in a row makes its squared norm NaN/inf
        norms = np.einsum("ij,ij->i", mat, mat)
        if not np.isfinite(norms).all():
            rows = np.flatnonzero(~np.isfinite(norms))
            bad = rows[~np.isfinite(mat[rows]).all(axis=1)]
            if bad.size:
                i = int(bad[0])
                raise errors.RecordError(f"record {i} (id {ids[i]!r}): embedding contains NaN or inf")
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
        # the FixedSizeList wraps the flat float buffer: no per-row Python objects
        emb = pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1), type=pa.float32()), self.dim)
        return pa.Table.from_arrays([
            pa.array(ids, pa.string()), pa.array(texts, pa.string()),
            pa.array(sources, pa.string()), pa.array(chunks, pa.int32()),
            pa.array(metas, pa.string()), pa.array(hashes, pa.string()), emb,
        ], schema=self._schema)

    def delete(self, ids: Sequence[str] | None = None, where: str | None = None) -> int:
        """Delete rows by id and/or an SQL filter (both given: rows matching both).

        Args:
            ids: record ids (quoted safely).
            where: SQL filter, e.g. ``"source = 'a.txt'"``; ``"true"`` deletes everything.

        Returns:
            Number of rows deleted.
        """
        if ids is None and where is None:
            raise errors.InputError("delete needs ids or a where filter (use where='true' for all)")
        if isinstance(ids, str):
            ids = [ids]
        if ids is not None:
            ids = list(dict.fromkeys(str(i) for i in ids))
            if not ids:
                return 0
            batches = [(_in_filter("id", c), c) for c in _chunks(ids, _IN_CHUNK)]
            if where:  # which of the ids match is known only to LanceDB
                batches = [(f"({f}) AND ({where})", None) for f, _ in batches]
        else:
            batches = [(where, None)]
        deleted = 0
        with self._wlock:
            for f, known in batches:
                deleted += self._delete_filter(f, known, query=where)
        return deleted

    def _delete_filter(self, f: str, ids: Sequence[str] | None, query: str | None = None) -> int:
        """One LanceDB delete; ``ids``: the ids it removes if known (else read first when
        the resident copy is current, so it can follow)."""
        before = self.version()
        # the snapshot read once: the background loader may replace it meanwhile
        snap = self._tier.snapshot if self._tier is not None else None
        if ids is None and snap is not None and snap.version == before:
            ids = self._scan(["id"], f)["id"].to_pylist()
        res = self._call("delete", lambda: self._table.delete(f), query=query)
        self._advance(before, res, None if ids is None else (lambda s: s.delete(ids)))
        return int(getattr(res, "num_deleted_rows", 0) or 0)

    def delete_sources(self, sources: Iterable[str]) -> int:
        """Delete every chunk of the given sources (vanished or skipped files); returns rows deleted."""
        sources = list(dict.fromkeys(str(s) for s in sources))
        deleted = 0
        with self._wlock:
            for c in _chunks(sources, _IN_CHUNK):
                deleted += self._delete_filter(_in_filter("source", c), None)
        return deleted

    # -- reading
    def count(self, where: str | None = None) -> int:
        """Rows in the collection (matching ``where`` if given)."""
        return int(self._call("count", lambda: self._table.count_rows(where), query=where))

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[dict]:
        """Records by id, in the order asked (missing ids are left out).

        Returns:
            dicts with id, text, source, chunk, metadata (dict), content_hash and, with
            ``with_embedding``, embedding (float32 array of shape (dim,)).
        """
        if isinstance(ids, str):
            ids = [ids]
        ids = [str(i) for i in ids]
        cols = ["id", "text", "source", "chunk", "metadata", "content_hash"]
        if with_embedding:
            cols.append(VECTOR_COLUMN)
        found: dict[str, dict] = {}
        for c in _chunks(list(dict.fromkeys(ids)), _IN_CHUNK):
            t = self._scan(cols, _in_filter("id", c))
            vecs = None
            if with_embedding:
                vecs = t[VECTOR_COLUMN].combine_chunks().flatten().to_numpy(
                    zero_copy_only=False).reshape(-1, self.dim)
                t = t.drop_columns([VECTOR_COLUMN])
            for j, row in enumerate(t.to_pylist()):
                row["metadata"] = _parse_metadata(row["metadata"])
                if vecs is not None:
                    row[VECTOR_COLUMN] = vecs[j].copy()
                found[row["id"]] = row
        return [found[i] for i in ids if i in found]

    def hashes_for_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """``{id: content_hash}`` for those of ``ids`` that are stored."""
        out: dict[str, str] = {}
        for c in _chunks(list(dict.fromkeys(str(i) for i in ids)), _IN_CHUNK):
            t = self._scan(["id", "content_hash"], _in_filter("id", c))
            out.update(zip(t["id"].to_pylist(), t["content_hash"].to_pylist(), strict=True))
        return out

    def hashes_for_source(self, source: str) -> dict[str, str]:
        """``{id: content_hash}`` of the chunks of ``source``."""
        t = self._scan(["id", "content_hash"], f"source = {_sql_str(source)}")
        return dict(zip(t["id"].to_pylist(), t["content_hash"].to_pylist(), strict=True))

    def hashes_by_source(self) -> dict[str, dict[str, str]]:
        """``{source: {id: content_hash}}`` for the whole table, in one scan (what an
        index run reads once, instead of one query per file)."""
        t = self._scan(["id", "source", "content_hash"])
        out: dict[str, dict[str, str]] = {}
        for i, src, h in zip(t["id"].to_pylist(), t["source"].to_pylist(),
                             t["content_hash"].to_pylist(), strict=True):
            out.setdefault(src, {})[i] = h
        return out

    def ids_for_source(self, source: str) -> list[str]:
        """Ids of the chunks of ``source`` (sorted by chunk index)."""
        t = self._scan(["id", "chunk"], f"source = {_sql_str(source)}")
        pairs = sorted(zip(t["chunk"].to_pylist(), t["id"].to_pylist(), strict=True))
        return [i for _, i in pairs]

    def sources(self) -> set[str]:
        """The distinct sources stored."""
        t = self._scan(["source"])
        return set(pc.unique(t["source"]).to_pylist()) - {None}

    def source_hashes(self) -> dict[str, set[str]]:
        """``{source: {content_hash, ...}}`` over the whole collection (one scan)."""
        t = self._scan(["source", "content_hash"])
        out: dict[str, set[str]] = {}
        for s, h in zip(t["source"].to_pylist(), t["content_hash"].to_pylist(), strict=True):
            out.setdefault(s or "", set()).add(h)
        return out

    # -- search
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
                guaranteed exact top-k at the cost of a full scan (~10 ms per 100k x 768
                rows from the resident copy, ~170 ms from LanceDB).

        Returns:
            SearchResults, best first.

        Raises:
            DimensionError: the vector has the wrong length.
            QueryError: ``where`` or ``query_text`` cannot be parsed.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise errors.InputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if mode not in ("vector", "fts", "hybrid"):
            raise errors.InputError(f"unknown search mode {mode!r}; use vector, fts or hybrid")
        if mode in ("fts", "hybrid") and (not isinstance(query_text, str) or not query_text.strip()):
            raise errors.InputError(f"{mode} search needs query_text")
        if mode == "vector":
            return [self._hit(r, score) for r, score in
                    self._vector_hits(self._query_vector(vector), k, where, exact)]
        if mode == "fts":
            return [self._hit(r, float(r["_score"])) for r in self._fts_rows(query_text, k, where)]
        q = self._query_vector(vector)
        n = max(2 * k, 20)  # candidates per ranking
        ranked = [[r for r, _ in self._vector_hits(q, n, where, exact)],
                  self._fts_rows(query_text, n, where)]
        fused: dict[str, list] = {}
        for rows in ranked:
            for rank, row in enumerate(rows, 1):
                entry = fused.setdefault(row["id"], [0.0, rank, row])
                entry[0] += 1.0 / (RRF_K + rank)
                entry[1] = min(entry[1], rank)
        best = sorted(fused.values(), key=lambda e: (-e[0], e[1]))[:k]
        return [self._hit(row, score) for score, _, row in best]

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
                f"collection {self.name!r} in {self.uri} expects {self.dim}")
        if not np.isfinite(q).all() or not q.any():
            raise errors.InputError("the query vector contains NaN/inf or is all zeros")
        return q

    def _vector_hits(self, q: np.ndarray, k: int, where: str | None, exact: bool = False
                     ) -> list[tuple[dict, float]]:
        """(row, cosine similarity) pairs, best first: from the resident copy when it is at
        the table's latest version, else from LanceDB."""
        hits = self._resident_hits(q, k, where, exact)
        if hits is not None:
            return hits
        return [(r, 1.0 - float(r["_distance"])) for r in self._vector_rows(q, k, where, exact)]

    def _resident_hits(self, q: np.ndarray, k: int, where: str | None, exact: bool
                       ) -> list[tuple[dict, float]] | None:
        tier = self._tier
        if tier is None:
            return None
        version = self.version()
        with tier.lock:
            snap = tier.current(version)
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
        ids = self._scan(["id"], where)["id"]
        if self.version() != snap.version:
            return None
        rows = snap.slots_of_arrow(ids)
        self._where_slots[key] = rows
        while len(self._where_slots) > _WHERE_CACHE:
            self._where_slots.popitem(last=False)
        return rows

    def _vector_rows(self, q: np.ndarray, k: int, where: str | None, exact: bool) -> list[dict]:
        params = self._indexes()["vector_params"]

        def run():
            b = self._table.search(q, vector_column_name=VECTOR_COLUMN).distance_type("cosine")
            if exact:
                b = b.bypass_vector_index()
            elif params is not None:
                b = b.nprobes(int(params["nprobes"]))
                rf = params.get("refine_factor")
                if rf:
                    b = b.refine_factor(int(rf))
                if params.get("ef"):
                    b = b.ef(max(int(params["ef"]), k * int(rf or 1)))
            if where:
                b = b.where(where, prefilter=True)
            return b.limit(k).select(RESULT_COLUMNS + ["_distance"]).to_arrow().to_pylist()
        return self._call("vector search", run, query=where)

    def _fts_rows(self, text: str, k: int, where: str | None) -> list[dict]:
        if FTS_INDEX not in self._indexes()["indexes"]:
            self._build_fts()

        def run():
            b = self._table.search(text, query_type="fts", fts_columns="text")
            if where:
                b = b.where(where, prefilter=True)
            return b.limit(k).select(RESULT_COLUMNS + ["_score"]).to_arrow().to_pylist()
        return self._call("full-text search", run, query=f"{text} | where: {where}" if where else text)

    @staticmethod
    def _hit(row: dict, score: float) -> SearchResult:
        return SearchResult(id=row["id"], score=score, text=row["text"], source=row["source"] or "",
                            chunk=int(row["chunk"] or 0), metadata=_parse_metadata(row["metadata"]))

    # -- resident copy
    def _resident_estimate(self) -> int:
        return self.count() * (5 * self.dim + 200)

    def _load_snapshot(self) -> Snapshot:
        """Read the whole collection at its latest version (pinned on a second handle, so
        commits during the read cannot mix versions)."""
        handle = self.db._open_table(self.name)
        version = int(handle.version)
        handle.checkout(version)
        t = self._call("load resident copy", lambda: handle.search().select(
            RESULT_COLUMNS + [VECTOR_COLUMN]).limit(None).to_arrow())
        return snapshot_from_arrow(t, self.dim, version)

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
    def _ensure_scalar_indexes(self) -> None:
        idx = self._indexes()["indexes"]
        for name, build in self._scalar_builders():
            if name not in idx:
                build()

    def _scalar_builders(self) -> tuple:
        return ((ID_INDEX, self._build_id_index), (SOURCE_INDEX, self._build_source_index),
                (FTS_INDEX, self._build_fts))

    def _build_id_index(self) -> None:
        from lancedb.index import BTree

        # merge-insert and delete join on id through this index; rows written since it was
        # built are scanned instead (see id_index_refresh_after)
        with self._preserving(1):
            self._call("build id index", lambda: self._table.create_index(
                "id", config=BTree(), replace=True, name=ID_INDEX))
        self._id_index_lag = 0

    def _build_source_index(self) -> None:
        from lancedb.index import BTree

        # the ingester looks up / deletes by source once per file
        with self._preserving(1):
            self._call("build source index", lambda: self._table.create_index(
                "source", config=BTree(), replace=True, name=SOURCE_INDEX))

    def _build_fts(self) -> None:
        from lancedb.index import FTS

        # positions make quoted phrase queries work
        with self._preserving(1):
            self._call("build full-text index", lambda: self._table.create_index(
                "text", config=FTS(with_position=True), replace=True, name=FTS_INDEX))

    def build_vector_index(self, kind: str | None = None) -> dict:
        """(Re)build the vector index over all current rows now; returns its parameters.

        Args:
            kind: "IVF_HNSW_SQ" or "IVF_PQ"; None -> the policy's kind.
        """
        from lancedb.index import HnswSq, IvfPq

        rows = self.count()
        if rows < 256:
            raise errors.StoreError(
                f"{self.uri}: collection {self.name!r} has {rows} rows; a vector index needs >= 256")
        p = self.policy.params_for(rows, self.dim, kind)
        if p["kind"] == "IVF_HNSW_SQ":
            config = HnswSq(distance_type="cosine", num_partitions=p["partitions"], m=p["m"],
                            ef_construction=p["ef_construction"])
        else:
            config = IvfPq(distance_type="cosine", num_partitions=p["partitions"],
                           num_sub_vectors=p["sub_vectors"])
        t0 = time.perf_counter()
        with self._preserving(2):
            with warnings.catch_warnings():  # "many duplicate vectors" k-means hints on tiny tables
                warnings.simplefilter("ignore")
                self._call("build vector index", lambda: self._table.create_index(
                    VECTOR_COLUMN, config=config, replace=True, name=VECTOR_INDEX))
            p = dict(p, rows_at_build=rows, build_s=round(time.perf_counter() - t0, 3))
            # the query parameters travel with the table (field metadata), for every process
            self._call("record index parameters", lambda: self._table.update_field_metadata(
                {"path": VECTOR_COLUMN, "metadata": {INDEX_PARAMS_KEY: json.dumps(p)}}))
        self._state = None
        return p

    def drop_vector_index(self) -> None:
        """Remove the vector index (searches become exact flat scans)."""
        if VECTOR_INDEX in self._indexes()["indexes"]:
            with self._preserving(1):
                self._call("drop vector index", lambda: self._table.drop_index(VECTOR_INDEX))
            self._state = None

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
        with self._wlock:  # two processes never build the same index at once
            return self._maintain()

    def _maintain(self, compact: bool = True) -> dict:
        done: dict[str, str] = {}
        self._unmaintained = self._writes_unmaintained = 0
        state = self._indexes()
        idx = state["indexes"]
        rows = self._rows_hint = self.count()
        threshold = self.policy.threshold_for(self.dim)
        vec = idx.get(VECTOR_INDEX)
        if vec is None:
            if rows >= max(threshold, 256):
                self.build_vector_index()
                done["vector_index"] = "created"
        else:
            unindexed = vec.num_unindexed_rows or 0
            if unindexed >= max(threshold, self.policy.rebuild_fraction * (vec.num_indexed_rows or 0)):
                self.build_vector_index(state["vector_params"]["kind"] if state["vector_params"] else None)
                done["vector_index"] = "rebuilt"
        for name, build in self._scalar_builders():
            cfg = idx.get(name)
            if cfg is None or (cfg.num_unindexed_rows or 0) >= min(
                    self.policy.scalar_rebuild_rows,
                    max(1, self.policy.rebuild_fraction * (cfg.num_indexed_rows or 0))):
                build()
                done[name] = "created" if cfg is None else "rebuilt"
        if compact:
            frags = self._fragments()
            if frags >= self.policy.compact_fragments:
                self._compact(timedelta(minutes=5), False)
                done["compacted"] = f"{frags} -> {self._fragments()} fragments"
        if done:
            self._state = None
        return done

    def _fragments(self) -> int:
        st = self._call("stats", self._table.stats)
        return int(st.get("fragment_stats", {}).get("num_fragments") or 0)

    def _compact(self, cleanup_older_than: timedelta | None, delete_unverified: bool) -> None:
        # compaction renumbers rows in an unknown number of commits: the resident copy reloads
        with self._preserving(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LanceDB warns on cleanup_older_than=0 (documented)
            self._call("optimize", lambda: self._table.optimize(
                cleanup_older_than=cleanup_older_than, delete_unverified=delete_unverified))
        self._state = None

    def optimize(self, cleanup_older_than: timedelta | float | None = timedelta(minutes=5),
                 delete_unverified: bool = False) -> dict:
        """Compact small files, fold new rows into every index, prune old versions.

        Runs :meth:`maintain` first (so a stale vector index is rebuilt rather than merged),
        then LanceDB's ``optimize``.  Heavy on big tables (compaction rewrites fragments;
        ~16 s at 100k x 768 on 2 cores): run it after large ingests, not per write
        (:meth:`maintain` runs it by itself once fragments pile up).

        Args:
            cleanup_older_than: keep versions newer than this (timedelta or seconds; 0 keeps
                only the latest, which breaks readers still on an older version in other
                processes; the default 5 minutes leaves them time to finish).
            delete_unverified: also delete files of failed writes younger than 7 days
                (only safe when no other process is writing).

        Returns:
            versions/fragments/bytes before and after, seconds, and what maintain did.
        """
        if cleanup_older_than is not None and not isinstance(cleanup_older_than, timedelta):
            cleanup_older_than = timedelta(seconds=float(cleanup_older_than))
        t0 = time.perf_counter()
        before = self._footprint()
        with self._wlock:
            maintained = self._maintain(compact=False)
            self._compact(cleanup_older_than, delete_unverified)
        after = self._footprint()
        return {"versions_before": before["versions"], "versions_after": after["versions"],
                "fragments_before": before["fragments"], "fragments_after": after["fragments"],
                "bytes_before": before["bytes"], "bytes_after": after["bytes"],
                "maintained": maintained, "seconds": round(time.perf_counter() - t0, 3)}

    def _footprint(self) -> dict:
        st = self._call("stats", self._table.stats)
        if self.db.local:
            size = _folder_bytes(_local_path(self._table.uri))
        else:
            size = int(st.get("total_bytes") or 0)
        return {"versions": len(self._call("list versions", self._table.list_versions)),
                "fragments": int(st.get("fragment_stats", {}).get("num_fragments") or 0),
                "bytes": size}

    def version(self) -> int:
        """The current table version (every write makes one)."""
        return int(self._table.version)

    def stats(self) -> dict:
        """Rows, distinct sources, model identity, dim, index state, versions, size on disk."""
        state = self._indexes()
        idx = state["indexes"]
        vec = idx.get(VECTOR_INDEX)
        fp = self._footprint()
        rows = self.count()
        index: dict[str, Any] = {"type": None, "indexed_rows": 0, "unindexed_rows": rows,
                                 "threshold": self.policy.threshold_for(self.dim)}
        if vec is not None:
            index.update(type=_kind_name(vec), indexed_rows=int(vec.num_indexed_rows or 0),
                         unindexed_rows=int(vec.num_unindexed_rows or 0))
            params = state["vector_params"] or {}
            index.update({k: params.get(k) for k in ("partitions", "nprobes", "ef", "refine_factor")})
        def coverage(cfg) -> dict | None:
            return None if cfg is None else {"indexed_rows": int(cfg.num_indexed_rows or 0),
                                              "unindexed_rows": int(cfg.num_unindexed_rows or 0)}
        return {
            "collection": self.name, "uri": self.uri, "rows": rows,
            "sources": len(self.sources()), "dim": self.dim, "model": self.identity.get("model"),
            "identity": self.identity, "index": index,
            "fts_index": coverage(idx.get(FTS_INDEX)), "id_index": coverage(idx.get(ID_INDEX)),
            "version": self.version(), "versions": fp["versions"], "fragments": fp["fragments"],
            "size_bytes": fp["bytes"], "resident": self.resident_info(),
        }


def _kind_name(cfg) -> str:
    """Index type as LanceDB's create_index spells it (list_indices says e.g. 'IvfHnswSq')."""
    t = str(getattr(cfg, "index_type", "")).replace("_", "").lower()
    return {"ivfhnswsq": "IVF_HNSW_SQ", "ivfpq": "IVF_PQ", "ivfhnswpq": "IVF_HNSW_PQ",
            "ivfflat": "IVF_FLAT", "ivfsq": "IVF_SQ"}.get(t, str(getattr(cfg, "index_type", "")))
