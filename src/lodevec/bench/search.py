"""Search benchmark of the store: insert throughput, upsert latency, latency and recall.

Builds a collection of ``rows`` clustered synthetic unit vectors *through the store*
(:meth:`lodevec.store.Collection.upsert`), then measures every search path the store
takes, each against exact top-k computed here with numpy:

* ``resident``: the in-memory int8 scan + float32 re-rank (:mod:`lodevec.store.resident`),
  what a long-lived process (the server, an application) searches;
* ``exact``: the resident copy scored in full in float32 (``search(exact=True)``): the
  store's flat search, a guaranteed exact top-k;
* ``flat``: LanceDB's own exact scan (no vector index, no resident copy: what a one-shot
  CLI search of a table below the index threshold does), the peer for ``exact``;
* each vector index kind (LanceDB, no resident copy);
* full-text, hybrid and a prefiltered vector search, as a long-lived process runs them.

Queries are perturbed members of the clusters, as real queries land near documents.
``lodevec bench search`` prints the rows this returns.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..store.indexes import KIND_NAMES, QUERY_PARAM_KEYS, IndexPolicy  # (no pyarrow, no LanceDB)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["run_search_bench", "make_clustered", "CONFIGS", "DEFAULT_CONFIGS"]

#: the search paths that are not a vector index kind
_PATHS: tuple[str, ...] = ("resident", "exact", "flat")
#: every search path the bench can measure (names are case-insensitive): the paths, then
#: every vector index kind of ``lodevec.store.indexes.VECTOR_KINDS``
CONFIGS: tuple[str, ...] = _PATHS + KIND_NAMES
#: the resident tier (int8 and exact), LanceDB's flat scan and the index kind the store
#: builds by default; add the other kinds to compare
DEFAULT_CONFIGS: tuple[str, ...] = _PATHS + (IndexPolicy.kind,)
_CONFIGS = {c.upper() for c in CONFIGS}
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
          "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")


def make_clustered(rows: int, dim: int, clusters: int = 256, spread: float = 0.35,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random cluster centres.

    Args:
        rows, dim: output shape.
        clusters: number of Gaussian clusters.
        spread: per-coordinate noise std relative to the unit-variance centres.
        seed: RNG seed.

    Returns:
        ``(vectors, labels)``: float32 array of shape (rows, dim) with unit rows, and the
        int64 cluster label of each row, shape (rows,).
    """
    import numpy as np  # (deferred: the CLI's parser imports this module)

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    labels = rng.integers(0, clusters, rows)
    x = np.empty((rows, dim), dtype=np.float32)
    for lo in range(0, rows, 16384):  # in slabs: no second (rows, dim) temporary
        hi = min(rows, lo + 16384)
        x[lo:hi] = centres[labels[lo:hi]] + spread * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def _exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows of ``x`` (n, d) with the largest cosine to each query (m, d)."""
    import numpy as np  # (deferred: the CLI's parser imports this module)

    out = np.empty((len(q), k), dtype=np.int64)
    for lo in range(0, len(q), 64):
        s = q[lo:lo + 64] @ x.T  # rows are unit vectors: dot = cosine
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1)
        out[lo:lo + 64] = np.take_along_axis(part, order, axis=1)
    return out


def _timed(fn: Callable[[int], object], n: int) -> tuple[list[float], list[object]]:
    times, outs = [], []
    for i in range(n):
        t0 = time.perf_counter()
        outs.append(fn(i))
        times.append(time.perf_counter() - t0)
    return times, outs


def _pct(times: Sequence[float]) -> tuple[float, float]:
    import numpy as np  # (deferred: the CLI's parser imports this module)

    a = np.asarray(times) * 1e3
    return round(float(np.percentile(a, 50)), 3), round(float(np.percentile(a, 95)), 3)


def run_search_bench(rows: int, dim: int, queries: int, k: int = 10, seed: int = 0,
                     db_path: str | None = None, configs: Sequence[str] = DEFAULT_CONFIGS,
                     clusters: int = 256, single_upserts: int = 50,
                     progress: Callable[[str], None] | None = None) -> list[dict]:
    """Benchmark the store on ``rows`` x ``dim`` clustered vectors.

    Args:
        rows: vectors in the table.
        dim: their dimension.
        queries: timed queries per configuration (also the recall sample).
        k: results per query (recall is recall@k; the key stays ``recall_at_10``).
        seed: RNG seed (data and queries).
        db_path: database folder; None -> a temporary folder, removed afterwards.  An
            existing folder gets a fresh collection named ``bench``.
        configs: "resident", "exact", "flat" and/or vector index kinds (``KIND_NAMES``:
            "IVF_HNSW_SQ", "IVF_PQ").
            Then full-text, hybrid and prefiltered vector search are timed (through the
            resident copy when "resident" is among the configs).
        clusters: Gaussian clusters in the data.
        single_upserts: timed one-record upserts.
        progress: called with a line of text at each step.

    Returns:
        One dict per measurement, each with ``config``, ``build_s``, ``p50_ms``,
        ``p95_ms``, ``recall_at_10`` (None where not applicable), plus
        ``insert_rows_per_s`` in the ``insert`` row and ``rows``, ``dim``, ``k``.
    """
    import numpy as np  # (deferred: the CLI's parser imports this module)

    from ..store import Database

    say = progress or (lambda _msg: None)
    if rows < 1 or dim < 1 or queries < 1 or k < 1:
        raise ValueError("rows, dim, queries and k must be positive")
    unknown = [c for c in configs if c.upper() not in _CONFIGS]
    if unknown:
        raise ValueError(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    k = min(k, rows)
    tmp = None
    if db_path is None:
        tmp = tempfile.mkdtemp(prefix="lodevec-bench-")
        db_path = tmp
    out: list[dict] = []
    base = {"rows": rows, "dim": dim, "k": k}
    try:
        say(f"generating {rows} x {dim} vectors")
        x, labels = make_clustered(rows, dim, clusters, seed=seed)
        rng = np.random.default_rng(seed + 1)
        qi = rng.integers(0, rows, queries)
        q = x[qi] + 0.02 * rng.standard_normal((queries, dim), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        say("exact top-k with numpy")
        truth = _exact_topk(x, q, k)

        # the threshold above the table size: the bench decides when indexes are built
        policy = IndexPolicy(threshold=rows + 1)
        db = Database(db_path, index_policy=policy)
        if db.exists("bench"):
            db.drop("bench")
        ident = {"architecture": "synthetic", "model": f"bench-{dim}d", "digest": f"seed{seed}",
                 "dim": dim, "matryoshka_dim": None, "prompts": {}}
        coll = db.create_or_open("bench", identity=ident)
        # LanceDB alone, as a process without the resident copy sees the same table
        lance = Database(db_path, index_policy=policy, resident=False).open("bench", ident)
        words = np.asarray(_WORDS)
        w = rng.integers(0, len(_WORDS), (rows, 2))
        records = [{"id": f"doc{i}", "text": f"chunk {i} topic{labels[i]} {words[w[i, 0]]} {words[w[i, 1]]}",
                    "source": f"file{i // 8}.txt", "chunk": i % 8, "metadata": None,
                    "content_hash": None, "embedding": x[i]} for i in range(rows)]
        say(f"bulk upsert of {rows} rows")
        t0 = time.perf_counter()
        coll.upsert(records)
        dt = time.perf_counter() - t0
        out.append(dict(base, config="insert", build_s=round(dt, 3), p50_ms=None, p95_ms=None,
                        recall_at_10=None, insert_rows_per_s=round(rows / dt, 1)))
        del records

        def record(config: str, fn: Callable[[int], object], warm: Callable[[], object] | None,
                   n: int = queries, truth: list[set] | None = None, build_s: float | None = None,
                   extra: dict | None = None) -> None:
            """Time ``fn(i)`` for ``i < n`` after the untimed ``warm()`` (caches, index
            files); append a result row, with recall@k when ``truth`` (ids per query)."""
            if warm is not None:
                warm()
            times, res = _timed(fn, n)
            p50, p95 = _pct(times)
            recall = None
            if truth is not None:
                recall = float(np.mean([len(truth[i] & {r.id for r in hits}) / k
                                        for i, hits in enumerate(res)]))
            out.append(dict(base, config=config, build_s=build_s, p50_ms=p50, p95_ms=p95,
                            recall_at_10=None if recall is None else round(recall, 4),
                            **(extra or {})))
            say(f"{config}: p50 {p50} ms, p95 {p95} ms"
                + ("" if recall is None else f", recall@{k} {recall:.3f}"))

        say(f"{single_upserts} single upserts")

        def one(i: int) -> None:
            j = int(qi[i % queries])
            coll.upsert([{"id": f"doc{j}", "text": f"updated chunk {j}", "source": f"file{j // 8}.txt",
                          "chunk": j % 8, "metadata": {"rev": i}, "embedding": x[j]}])
        record("upsert_single", one, None, n=single_upserts)

        ids = np.asarray([f"doc{i}" for i in range(rows)])
        truth_ids = [set(ids[t]) for t in truth]

        def measure(config: str, build_s: float | None, extra: dict | None = None, c=lance,
                    exact: bool = False) -> None:
            def fn(i):
                return c.search(q[i], k=k, exact=exact)
            record(config, fn, lambda: fn(0), truth=truth_ids, build_s=build_s, extra=extra)

        wanted = {name.lower() for name in configs}
        kinds = [name for name in configs if name.lower() not in _PATHS]
        resident = bool(wanted & {"resident", "exact"})
        if resident:
            say("loading the resident copy")
            t0 = time.perf_counter()
            info = coll.load_resident()
            build = round(time.perf_counter() - t0, 3)
            for name in ("resident", "exact"):
                if name in wanted:
                    measure(name, build, {"resident_mb": round(info["bytes"] / 2**20, 1)},
                            c=coll, exact=name == "exact")
        if "flat" in wanted:
            coll.drop_vector_index()
            measure("flat", None)
        for kind in kinds:
            say(f"building {kind}")
            t0 = time.perf_counter()
            params = coll.build_vector_index(kind)
            build = round(time.perf_counter() - t0, 3)
            measure(kind, build, {"params": {kk: params.get(kk) for kk in QUERY_PARAM_KEYS}})
        # full-text, hybrid and prefiltered search with the last index built, through the
        # resident copy when it is measured (as the server runs them)
        c = coll if resident else lance
        if resident:
            coll.load_resident()  # the index builds above moved the table's version
        texts = [f"topic{labels[j]} {words[w[j, 0]]}" for j in qi]
        record("fts", lambda i: c.search(q[i], k=k, query_text=texts[i], mode="fts"),
               lambda: c.search(None, k=k, query_text=texts[0], mode="fts"))
        record("hybrid", lambda i: c.search(q[i], k=k, query_text=texts[i], mode="hybrid"), None)
        # a prefiltered vector search (where on a scalar column): recall against exact
        # search over the rows that pass the filter; LanceDB's own prefilter beside it
        keep = np.flatnonzero(np.arange(rows) % 8 < 4)
        sub_ids = [set(ids[t]) for t in keep[_exact_topk(x[keep], q, k)]]
        where_paths = [("vector+where", c)] + ([("vector+where-lancedb", lance)] if resident else [])
        for name, cc in where_paths:
            record(name, lambda i, cc=cc: cc.search(q[i], k=k, where="chunk < 4"),
                   lambda cc=cc: cc.search(q[0], k=k, where="chunk < 4"), truth=sub_ids)
        # a different filter every query: nothing cached (LanceDB evaluates each filter)
        if resident:
            fresh = [f"chunk < 4 AND source != 'file{i}.txt'" for i in range(queries + 1)]
            record("vector+new-where", lambda i: coll.search(q[i], k=k, where=fresh[i]),
                   lambda: coll.search(q[0], k=k, where=fresh[-1]))
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
