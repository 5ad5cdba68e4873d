"""A local table read through pylance (``lance``) directly, in the shape of the LanceDB
table the store's modules call; the LanceDB table itself is opened on the first call
this class does not answer (any write, full-text search, ``checkout``...) and answers
everything from then on.

Why: ``import lancedb`` costs more than a whole one-shot search (most of it in a
generated REST client that local databases never call, see docs/performance.md,
"Start-up"), while ``lance`` is the engine LanceDB itself runs on: a vector search,
a scan, a count or an index listing through it is the same query on the same files,
at the same version, with the same results (``tests/store/test_direct.py`` checks
ids, scores and order against LanceDB).  So ``search``, ``stats`` and ``get`` never
import LanceDB, and writes still go through it.

What is answered here (the calls of :mod:`lodevec.store`): ``version``, ``schema``,
``uri``, ``count_rows``, ``list_indices``, ``stats``, ``list_versions`` and
``search`` for vector queries and plain scans (``select`` / ``where`` / ``limit`` /
``distance_type`` / ``nprobes`` / ``refine_factor`` / ``ef`` /
``bypass_vector_index``, then ``to_arrow`` or ``to_batches``).  Each read first moves
to the table's latest version, as LanceDB does with a read consistency interval of 0
(the local default), so commits of other processes are seen.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import Any

__all__ = ["DirectTable", "lance"]


def lance():
    """The ``lance`` module, imported on first use."""
    # as for lancedb (see _lance.lancedb): index statistics without the IVF centroids
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    import lance  # deferred: pyarrow and numpy come with it

    return lance


def _lancedb_type(lance_type: str) -> str:
    """An index type as LanceDB's ``list_indices`` spells it (lance: ``IVF_HNSW_SQ``,
    ``Inverted``, ``BTree``; LanceDB: ``IvfHnswSq``, ``FTS``, ``BTree``)."""
    if lance_type == "Inverted":
        return "FTS"
    if "_" in lance_type:
        return "".join(p.capitalize() for p in lance_type.split("_"))
    return lance_type


_USER_ERROR = "Invalid user input: "
#: where in lance's Rust sources an error was raised (not for users' eyes)
_RUST_PLACE = re.compile(r",\s*/\S+\.rs:\d+:\d+\s*$")


@contextlib.contextmanager
def _as_lancedb_errors():
    """Errors as LanceDB raises them: a bad filter or query is a ``ValueError`` (lance
    raises some as ``OSError``), without the Rust source location lance appends."""
    try:
        yield
    except (OSError, ValueError) as e:
        msg = str(e)
        if not msg.startswith(_USER_ERROR):
            raise
        raise ValueError("Invalid input, " + _RUST_PLACE.sub("", msg[len(_USER_ERROR):])) from None


def _index_list(ds) -> list[dict]:
    """``list_indices``: the one listing with each index's type (``IVF_HNSW_SQ``...) at no
    extra cost; ``describe_indices``, its announced successor, names the type only
    through per-index statistics, a few ms each (so its deprecation note is silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.list_indices()


class IndexEntry:
    """One index as ``list_indices`` describes it: ``name``, ``index_type``, ``columns``;
    its row coverage (``num_indexed_rows``, ``num_unindexed_rows``) is read on first
    access (a search needs only the names)."""

    def __init__(self, ds, desc: dict):
        self._ds = ds
        self.name: str = desc["name"]
        self.index_type: str = _lancedb_type(str(desc["type"]))
        self.columns: list[str] = list(desc["fields"])

    @cached_property
    def _stats(self) -> dict:
        return self._ds.stats.index_stats(self.name)

    @property
    def num_indexed_rows(self) -> int:
        return int(self._stats.get("num_indexed_rows") or 0)

    @property
    def num_unindexed_rows(self) -> int:
        return int(self._stats.get("num_unindexed_rows") or 0)

    def __repr__(self) -> str:
        return f"IndexEntry(name={self.name!r}, index_type={self.index_type!r}, columns={self.columns})"


class DirectTable:
    """A local LanceDB table, read through ``lance`` until something else is asked.

    Args:
        path: the table's folder (``<db>/<name>.lance``).
        open_lancedb: ``() -> lancedb table`` (the same table through LanceDB).
        read_consistency_interval: as LanceDB's: how stale a read may be w.r.t. other
            processes' commits (0: check every read; None: never).
    """

    def __init__(self, path: str, open_lancedb: Callable[[], Any],
                 read_consistency_interval: timedelta | None = timedelta(0)):
        self._path = path
        self._open_lancedb = open_lancedb
        self._interval = (None if read_consistency_interval is None
                          else read_consistency_interval.total_seconds())
        self._ds = lance().dataset(path)
        self._checked = time.monotonic()
        self._real = None
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return f"DirectTable({self._path!r}, lancedb={'open' if self._real is not None else 'not open'})"

    # -- the LanceDB table, for everything else
    def lancedb_table(self):
        """The same table through LanceDB (opened once; answers every call from then on)."""
        if self._real is None:
            with self._opening:  # one handle, also when server threads ask at once
                if self._real is None:
                    self._real = self._open_lancedb()
        return self._real

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.lancedb_table(), name)

    @property
    def delegated(self) -> bool:
        """Whether calls now go to the LanceDB table."""
        return self._real is not None

    def _fresh(self):
        """The dataset at the latest version when the consistency interval says so."""
        ds = self._ds
        if self._interval is not None and time.monotonic() - self._checked >= self._interval:
            latest = ds.latest_version
            if latest != ds.version:
                ds = self._ds = ds.checkout_version(latest)
            self._checked = time.monotonic()
        return ds

    # -- what the store reads
    @property
    def uri(self) -> str:
        return self._path if self._real is None else self._real.uri

    @property
    def version(self) -> int:
        return self._fresh().version if self._real is None else self._real.version

    @property
    def schema(self):
        return self._fresh().schema if self._real is None else self._real.schema

    def count_rows(self, filter: str | None = None) -> int:  # noqa: A002 (LanceDB's name)
        if self._real is not None:
            return self._real.count_rows(filter)
        with _as_lancedb_errors():
            return self._fresh().count_rows(filter=filter)

    def list_indices(self) -> list:
        if self._real is not None:
            return self._real.list_indices()
        ds = self._fresh()
        return [IndexEntry(ds, d) for d in _index_list(ds)]

    def list_versions(self) -> list[dict]:
        if self._real is not None:
            return self._real.list_versions()
        return self._fresh().versions()

    def stats(self) -> dict:
        """Row, index and fragment counts (LanceDB's ``stats`` without ``total_bytes``:
        local databases count their bytes on disk)."""
        if self._real is not None:
            return self._real.stats()
        ds = self._fresh()
        return {"num_rows": ds.count_rows(), "num_indices": len(_index_list(ds)),
                "fragment_stats": {"num_fragments": len(ds.get_fragments())}}

    def search(self, query=None, vector_column_name: str | None = None, **kwargs):
        """A query builder: vector (``query`` an array) or scan (``query`` None) here;
        anything else (a text for full-text search, other options) goes to LanceDB."""
        if self._real is not None or isinstance(query, str) or kwargs:
            return self.lancedb_table().search(query, vector_column_name=vector_column_name,
                                               **kwargs)
        return _Query(self, query, vector_column_name)


class _Query:
    """The LanceDB query-builder calls the store makes, run as one ``lance`` scan.  A call
    it does not know replays every call so far on LanceDB's own builder."""

    def __init__(self, table: DirectTable, vector, column: str | None):
        self._table = table
        self._vector = vector
        self._column = column
        self._calls: list[tuple[str, tuple, dict]] = []
        self._columns: list[str] | None = None
        self._where: str | None = None
        self._prefilter = False
        self._limit: int | None = None if vector is None else 10  # LanceDB's defaults
        self._nearest: dict[str, Any] = {}

    def _record(self, name: str, args: tuple, kwargs: dict) -> _Query:
        self._calls.append((name, args, kwargs))
        return self

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def replay(*args, **kwargs):
            b = self._table.lancedb_table().search(self._vector, vector_column_name=self._column)
            for n, a, kw in self._calls:
                b = getattr(b, n)(*a, **kw)
            return getattr(b, name)(*args, **kwargs)
        return replay

    def select(self, columns: list[str]) -> _Query:
        self._columns = list(columns)
        return self._record("select", (columns,), {})

    def where(self, where: str, prefilter: bool = True) -> _Query:
        self._where, self._prefilter = where, prefilter
        return self._record("where", (where,), {"prefilter": prefilter})

    def limit(self, limit: int | None) -> _Query:
        self._limit = limit
        return self._record("limit", (limit,), {})

    def distance_type(self, kind: str) -> _Query:
        self._nearest["metric"] = kind
        return self._record("distance_type", (kind,), {})

    def nprobes(self, n: int) -> _Query:
        # LanceDB's nprobes sets the minimum and the maximum
        self._nearest["minimum_nprobes"] = self._nearest["maximum_nprobes"] = int(n)
        return self._record("nprobes", (n,), {})

    def refine_factor(self, n: int) -> _Query:
        self._nearest["refine_factor"] = int(n)
        return self._record("refine_factor", (n,), {})

    def ef(self, n: int) -> _Query:
        self._nearest["ef"] = int(n)
        return self._record("ef", (n,), {})

    def bypass_vector_index(self) -> _Query:
        self._nearest["use_index"] = False
        return self._record("bypass_vector_index", (), {})

    def _scanner(self, batch_size: int | None = None):
        ds = self._table._fresh()
        kw: dict[str, Any] = {"columns": self._columns, "filter": self._where}
        if batch_size:
            kw["batch_size"] = batch_size
        if self._vector is None:
            kw["limit"] = self._limit
        else:
            kw["nearest"] = {"column": self._column, "q": _arrow_vector(self._vector),
                             "k": self._limit, **self._nearest}
            kw["prefilter"] = self._prefilter
        return ds.scanner(**kw)

    def to_arrow(self):
        with _as_lancedb_errors():
            return self._scanner().to_table()

    def to_batches(self, batch_size: int | None = None):
        with _as_lancedb_errors():
            return self._scanner(batch_size).to_reader()


def _arrow_vector(q):
    """A float32 query as an Arrow array of the same values, built from its bytes: lance
    (and ``pa.array``) would look for numpy's masked arrays first, and importing
    ``numpy.ma`` costs tens of ms."""
    if getattr(q, "dtype", None) is not None and str(q.dtype) == "float32" and q.ndim == 1:
        import pyarrow as pa

        buf = pa.py_buffer(q.tobytes())
        return pa.Array.from_buffers(pa.float32(), len(q), [None, buf])
    return q
