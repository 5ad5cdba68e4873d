"""asv benchmarks of the LanceDB store on synthetic clustered vectors (no model needed).

Run: ``asv run --python=same --bench bench_store`` from the repo root.  The table is
built once per run (``setup_cache``) at 20k x 768, the size at which the store switches
from flat search to its IVF_HNSW_SQ index; ``lodevec bench search --rows 100000`` runs
the full-size benchmark.  ``track_*`` methods report recall and insert throughput.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import numpy as np

if importlib.util.find_spec("lodevec") is None:  # not installed: the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lodevec.bench.search import _exact_topk, make_clustered  # noqa: E402
from lodevec.store import Database, IndexPolicy  # noqa: E402

ROWS, DIM, QUERIES, K = 20_000, 768, 50, 10
IDENT = {"architecture": "synthetic", "model": "asv", "digest": "asv", "dim": DIM}
#: StoreSearch's opened collections, by path (one per benchmark process)
_STATE: dict[str, tuple] = {}


def _records(x: np.ndarray, labels: np.ndarray, start: int = 0) -> list[dict]:
    return [{"id": f"doc{start + i}", "text": f"chunk {start + i} topic{labels[i]}",
             "source": f"file{(start + i) // 8}.txt", "chunk": (start + i) % 8,
             "embedding": x[i]} for i in range(len(x))]


def _queries(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    q = x[rng.integers(0, len(x), QUERIES)] + 0.02 * rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


class StoreSearch:
    """Single-query latency of each search path on an indexed 20k x 768 table: LanceDB
    alone (vector = its IVF_HNSW_SQ index, flat = its exact scan), and through the
    resident copy (resident, resident_exact = its float32 full scan, resident_where,
    resident_hybrid), as the server searches."""

    timeout = 900
    params = (["vector", "vector_where", "flat", "fts", "hybrid",
               "resident", "resident_exact", "resident_where", "resident_hybrid"],)
    param_names = ["path"]

    def setup_cache(self):
        path = Path("store-bench-db").resolve()
        shutil.rmtree(path, ignore_errors=True)
        x, labels = make_clustered(ROWS, DIM)
        db = Database(path, index_policy=IndexPolicy(threshold=ROWS))
        coll = db.create_or_open("search", identity=IDENT)
        coll.upsert(_records(x, labels))  # crosses the threshold: builds the index
        flat = db.create_or_open("flat", identity=IDENT)
        flat.auto_index = False
        flat.upsert(_records(x, labels))
        truth = _exact_topk(x, _queries(x), K)
        return str(path), truth

    def _state(self, cache, path) -> tuple:
        """(collection, path as searched, queries, texts, truth), built once per process.
        Not a ``setup``: asv re-runs setup hooks before every timed call, and reopening
        the table and reloading the resident copy each time would time cold caches."""
        if path not in _STATE:
            db_path, truth = cache
            resident = path.startswith("resident")
            coll = Database(db_path, resident=resident).open("flat" if path == "flat" else "search")
            searched = path
            if resident:
                coll.load_resident()
                searched = {"resident": "vector", "resident_exact": "exact",
                            "resident_where": "vector_where", "resident_hybrid": "hybrid"}[path]
            q = _queries(make_clustered(ROWS, DIM)[0])
            texts = [f"topic{i % 256}" for i in range(QUERIES)]
            _STATE[path] = (coll, searched, q, texts, truth)
            self._run(cache, path, 0)  # warm caches, open index files
        return _STATE[path]

    def _run(self, cache, path, i):
        coll, p, q, texts, _ = self._state(cache, path)
        q = q[i % QUERIES]
        if p in ("vector", "flat", "exact"):
            return coll.search(q, k=K, exact=p == "exact")
        if p == "vector_where":
            return coll.search(q, k=K, where="chunk < 4")
        return coll.search(q, k=K, query_text=texts[i % QUERIES], mode=p)

    def time_query(self, cache, path):
        self._run(cache, path, 3)

    def track_recall_at_10(self, cache, path):
        if path not in ("vector", "flat", "resident", "resident_exact"):
            return float("nan")
        truth = self._state(cache, path)[4]
        hits = [{int(r.id[3:]) for r in self._run(cache, path, i)} for i in range(QUERIES)]
        return float(np.mean([len(h & set(truth[i])) / K for i, h in enumerate(hits)]))

    track_recall_at_10.unit = "recall"


class StoreUpsert:
    """Bulk upsert throughput and single-record upsert latency."""

    timeout = 600
    number = 1
    repeat = 5

    def setup(self):
        self.path = Path("store-upsert-db").resolve()
        shutil.rmtree(self.path, ignore_errors=True)
        x, labels = make_clustered(10_000, DIM, seed=2)
        self.records = _records(x, labels)
        self.coll = Database(self.path).create_or_open(identity=IDENT)
        self.coll.upsert(self.records[:2000])

    def teardown(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def time_single_upsert(self):
        self.coll.upsert([self.records[7]])

    def track_bulk_rows_per_s(self):
        t0 = time.perf_counter()
        self.coll.upsert(self.records[2000:])
        return 8000 / (time.perf_counter() - t0)

    track_bulk_rows_per_s.unit = "rows/s"
