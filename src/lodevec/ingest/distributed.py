"""Distributed indexing on Ray: ``lodevec index --ray [auto|ADDRESS] PATH...``.

The driver is the single-process :class:`~lodevec.ingest.indexer.Indexer` -- it walks the
files, chunks them, compares content hashes with one scan of the table and removes the
chunks of vanished or shrunk files -- except that a full batch is not embedded in place:
it goes to one of ``workers`` Ray actors.  Each actor loads the model once (checking
that its file is the model the collection was made with), embeds its batches with its
own threads and writes the rows as a Lance fragment (``lance.fragment.write_fragments``)
straight to the table's storage, returning only the fragment's metadata.  Once per
*round* (``round_batches`` batches; two rounds are in flight, so the workers never wait
for a commit) the driver, holding the collection's write lock
(the ``flock``, or the S3 lease of :mod:`lodevec.store.lease`), deletes the old rows of
the re-embedded ids and commits every fragment of the round with one
``LanceOperation.Append``.

Guarantees, as in one process: the same rows and ids (the driver decides them, with the
same code), the same vectors (the same model and batches), no duplicates (a fragment is
part of the table only through the driver's commit; an id is deleted before its new row
is appended, in the same lock), the model identity checked on every worker.  A worker
killed mid-batch is restarted by Ray and the batch retried (``max_task_retries``): the
killed attempt's fragment was never committed, so it is garbage, not a duplicate.  A
killed driver leaves at most one round uncommitted (or deleted but not yet appended):
the rerun finds those chunks missing or changed and embeds them again.

Ray is imported only here (``pip install 'lodevec[ray]'``); ``import lodevec`` never
imports it.  Workers must reach the model file at the same path (or the same model in
their cache) and the database (an object store, or a shared folder).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable

from .. import errors
from .indexer import Chunk, Indexer, IndexSummary

__all__ = ["RayIndexer", "index_paths", "connect"]

#: batches per commit per worker: a round is ``workers * ROUND_PER_WORKER`` batches
ROUND_PER_WORKER = 4


def _ray():
    try:
        import ray
    except ImportError:
        raise errors.InputError("--ray needs Ray: pip install 'lodevec[ray]'") from None
    return ray


def connect(address: str | None, num_cpus: int | None = None):
    """Join a Ray cluster: ``address`` ("auto": a running cluster, else a local one on
    this machine; or ``host:port`` / ``ray://...``)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address in (None, "", "auto", "local"):
        try:
            if address == "auto":
                ray.init(address="auto", log_to_driver=False)
                return ray
        except (ConnectionError, RuntimeError):
            pass
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as e:
            raise errors.InputError(f"--ray {address}: cannot join the Ray cluster: {e}") from e
    return ray


class _EmbedWorker:
    """One Ray actor: the model, loaded once, and the table to write fragments into."""

    def __init__(self, model_path: str, digest: str, threads: int, dim: int | None,
                 dataset_uri: str, schema, storage_options: dict | None):
        import pyarrow as pa

        from ..embedding import Embedder
        from ..store.records import COLUMNS

        self.embedder = Embedder.from_gguf(model_path, threads=threads)
        if self.embedder.digest != digest:
            raise errors.ModelMismatchError(
                f"{model_path}: this worker's model file (sha256 {self.embedder.digest[:12]}) "
                f"is not the model the collection was made with ({digest[:12]})")
        self.dim, self.uri, self.opts = dim, dataset_uri, storage_options
        self.schema = schema
        self.columns = pa.schema([schema.field(c) for c in COLUMNS])

    def pid(self) -> int:
        return os.getpid()

    def embed_write(self, batch: list[tuple]) -> dict:
        """Embed ``(id, text, source, chunk, metadata, content_hash)`` rows and write them
        as one fragment; returns its metadata (uncommitted) and the token counts."""
        from lance.fragment import write_fragments

        from ..store.records import records_to_table

        t0 = time.perf_counter()
        res = self.embedder.encode([b[1] for b in batch], task="search_document", dim=self.dim)
        table = records_to_table(
            [{"id": i, "text": t, "source": s, "chunk": c, "metadata": m, "content_hash": h}
             for i, t, s, c, m, h in batch], self.columns, embeddings=res.embeddings)
        t1 = time.perf_counter()
        frags = write_fragments(table, self.uri, schema=self.schema, storage_options=self.opts)
        return {"fragments": [f.to_json() for f in frags], "rows": table.num_rows,
                "tokens": int(sum(res.n_tokens)), "truncated": int(sum(res.truncated)),
                "embed_s": t1 - t0, "write_s": time.perf_counter() - t1}


class RayIndexer(Indexer):
    """An :class:`Indexer` whose batches are embedded by Ray actors and committed as
    Lance fragments once per round (see the module docstring).

    Args:
        collection, embedder, chunk_tokens, overlap, batch_size, progress, dim: as for
            :class:`Indexer` (``embedder`` is the driver's: it chunks; the workers embed).
        address: the Ray cluster ("auto", ``host:port``, ``ray://...``).
        workers: actors (default: the cluster's CPUs // ``threads``).
        threads: compute threads per actor.
        round_batches: batches committed together (default ``workers * 4``).

    Attributes:
        rounds: commits made; ``timings``: seconds the driver spent per phase.
    """

    def __init__(self, collection, embedder, *, address: str | None = "auto",
                 workers: int | None = None, threads: int = 1,
                 round_batches: int | None = None, **kw):
        super().__init__(collection, embedder, **kw)
        self.address, self.threads = address, max(1, int(threads))
        self._workers_wanted = workers
        self._round_batches = round_batches
        self._actors: list = []
        self._inflight: list = []      # ObjectRefs of this round
        self._next = 0
        self._known: dict[str, str] = {}
        self.rounds = 0
        self.timings = {"commit_s": 0.0, "wait_s": 0.0, "delete_s": 0.0, "embed_s": 0.0,
                        "write_s": 0.0}

    # -- the actors
    def _start(self) -> None:
        if self._actors:
            return
        ray = connect(self.address, num_cpus=None)
        n = self._workers_wanted or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        coll = self.collection
        ident = coll.identity
        path = self.embedder.identity().get("path") or ident.get("path")
        ds = coll.table.to_lance()
        Actor = ray.remote(num_cpus=self.threads, max_restarts=3, max_task_retries=3)(_EmbedWorker)
        self._actors = [Actor.remote(str(path), ident["digest"], self.threads, self.dim,
                                     ds.uri, ds.schema, coll.db.storage_options)
                        for _ in range(n)]
        self._round_batches = self._round_batches or n * ROUND_PER_WORKER
        ray.get([a.pid.remote() for a in self._actors])  # every model loaded and checked

    def worker_pids(self) -> list[int]:
        self._start()
        ray = _ray()
        return ray.get([a.pid.remote() for a in self._actors])

    # -- the Indexer's hooks
    def flush(self) -> None:
        """Hand the queued chunks to the next actor; commit when a round is full."""
        if not self._pending:
            return
        self._start()
        batch, self._pending = self._pending, []
        rows = [(c.id, c.text, c.source, c.chunk, c.metadata, c.content_hash) for c in batch]
        actor = self._actors[self._next % len(self._actors)]
        self._next += 1
        self._inflight.append((actor.embed_write.remote(rows), [c.id for c in batch]))
        # two rounds in flight: the workers embed the next round while the oldest one is
        # awaited and committed (no idle workers at round boundaries)
        if len(self._inflight) >= 2 * self._round_batches:
            self._commit_round(self._round_batches)

    def _commit_round(self, n: int | None = None) -> None:
        """Wait for the oldest ``n`` batches in flight (None: all) and commit them."""
        if not self._inflight:
            return
        ray = _ray()
        from lance import LanceDataset, LanceOperation
        from lance.fragment import FragmentMetadata

        n = len(self._inflight) if n is None else n
        this, self._inflight = self._inflight[:n], self._inflight[n:]
        t0 = time.perf_counter()
        done = ray.get([ref for ref, _ in this])
        t1 = time.perf_counter()
        ids = [i for _, batch_ids in this for i in batch_ids]
        frags = [FragmentMetadata.from_json(json.dumps(f)) for d in done for f in d["fragments"]]
        coll = self.collection
        t = coll._t  # the store's table: its write lock and its retries (lodevec.store._lance)
        replaced = [i for i in ids if i in self._known]
        with t.lock:  # the same lock every lodevec writer takes: no upsert interleaves
            t2 = time.perf_counter()
            if replaced:
                coll.delete(ids=replaced)
            t3 = time.perf_counter()
            ds = coll.table.to_lance()
            t.call("commit fragments", lambda: LanceDataset.commit(
                ds.uri, LanceOperation.Append(frags), read_version=ds.version,
                storage_options=coll.db.storage_options))
            coll.table.checkout_latest()
            if t.tier is not None:
                t.tier.stale()
        t4 = time.perf_counter()
        self.rounds += 1
        self.timings["wait_s"] += t1 - t0
        self.timings["delete_s"] += t3 - t2
        self.timings["commit_s"] += t4 - t3
        self.timings["embed_s"] += sum(d["embed_s"] for d in done)
        self.timings["write_s"] += sum(d["write_s"] for d in done)
        for d in done:
            self.summary.chunks_embedded += d["rows"]
            self.summary.tokens += d["tokens"]
            self.summary.truncated += d["truncated"]
        self._tick()

    def _queue_changed(self, chunks: list[Chunk], stored: dict[str, str]) -> None:
        # the ids already stored (files: the start-of-run scan; records: their lookup):
        # their old rows are deleted in the round that appends the new ones
        self._known.update(stored)
        super()._queue_changed(chunks, stored)

    # -- the entry points
    def index_paths(self, paths: Iterable[str | os.PathLike], prune: bool = True,
                    follow_symlinks: bool = False) -> IndexSummary:
        t0 = time.perf_counter()
        super().index_paths(paths, prune=prune, follow_symlinks=follow_symlinks)
        self._commit_round()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def index_chunks(self, chunks: list[Chunk]) -> IndexSummary:
        t0 = time.perf_counter()
        super().index_chunks(chunks)
        self._commit_round()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def close(self) -> None:
        """Stop the actors (the cluster stays up)."""
        ray = _ray() if self._actors else None
        for a in self._actors:
            ray.kill(a)
        self._actors = []


def index_paths(collection, embedder, paths: Iterable[str | os.PathLike], *,
                address: str | None = "auto", workers: int | None = None, threads: int = 1,
                **kw) -> IndexSummary:
    """Index ``paths`` into ``collection`` with Ray actors (the Python entry point of
    ``lodevec index --ray``); ``kw`` as for :class:`RayIndexer`."""
    prune = kw.pop("prune", True)
    follow = kw.pop("follow_symlinks", False)
    ix = RayIndexer(collection, embedder, address=address, workers=workers, threads=threads, **kw)
    try:
        return ix.index_paths(paths, prune=prune, follow_symlinks=follow)
    finally:
        ix.close()
