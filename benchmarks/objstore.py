"""Object storage and Ray, measured: ``python benchmarks/objstore.py store|ray [options]``.

* ``store``: bulk upsert rows/s (new rows: check-and-append; the same rows again:
  merge-insert updates) and search latency (LanceDB path, resident path) on a local
  folder and on S3 (a moto server on loopback, started here; it is an in-memory
  Python server, so its numbers are a floor for the protocol's cost, not a real
  bucket's latency).
* ``ray``: tokens/s of ``RayIndexer`` with 1 and 2 workers (one thread each) on a local
  Ray cluster writing to the loopback S3 server, and the driver's own costs: seconds
  per batch (shard) it walks, chunks and dispatches, and seconds per round commit.

Prints one JSON object per measurement.  Numbers go to docs/performance.md and
docs/scaling.md with the machine's load at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT.parent / "shared" / "perf" / "perf-nomic-v1.5-random.Q4_K_M.gguf"


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                       "AWS_ALLOW_HTTP": "true", "AWS_EC2_METADATA_DISABLED": "true"})
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return proc, endpoint


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_store(args) -> None:
    from lodevec.store import Database

    ident = {"architecture": "nomic-bert", "model": "bench.gguf", "digest": "b" * 64,
             "dim": args.dim, "matryoshka_dim": None, "prompts": {}}
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    recs = [{"id": f"r{i}", "text": f"row {i}", "source": f"s{i % 100}", "chunk": 0,
             "metadata": {}} for i in range(args.rows)]
    queries = vecs[rng.integers(0, args.rows, args.queries)] + 0.01
    proc, _ = start_moto()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for where, uri in (("local", f"{tmp}/db"), ("s3", "s3://bench/db")):
                coll = Database(uri, resident=False, auto_index=False).create_or_open(identity=ident)
                t0 = time.perf_counter()
                coll.upsert(recs, embeddings=vecs)
                t_new = time.perf_counter() - t0
                t0 = time.perf_counter()
                coll.upsert(recs[: args.rows // 4], embeddings=vecs[: args.rows // 4])
                t_upd = time.perf_counter() - t0
                lat = {}
                for mode in ("lancedb", "resident"):
                    c = Database(uri, resident=(mode == "resident")).open(identity=ident)
                    if mode == "resident":
                        c.load_resident(wait=True)
                    c.search(queries[0], k=10)
                    times = []
                    for q in queries:
                        t0 = time.perf_counter()
                        c.search(q, k=10)
                        times.append(time.perf_counter() - t0)
                    lat[mode] = {"p50_ms": round(1e3 * statistics.median(times), 2),
                                 "p90_ms": round(1e3 * sorted(times)[int(0.9 * len(times))], 2)}
                print(json.dumps({"what": "store", "where": where, "rows": args.rows, "dim": args.dim,
                                  "insert_rows_s": round(args.rows / t_new),
                                  "update_rows_s": round(args.rows // 4 / t_upd),
                                  "search": lat, "load": load()}), flush=True)
    finally:
        proc.terminate()
        proc.wait()


def make_corpus(root: Path, files: int, words: int) -> None:
    vocab = ("alpha beta gamma delta rust python search vector index lance ray cluster "
             "token embed model chunk file shard round commit").split()
    rnd = random.Random(0)
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i:04d}.txt").write_text(
            "\n\n".join(" ".join(rnd.choice(vocab) for _ in range(words // 4)) for _ in range(4)))


def bench_ray(args) -> None:
    import ray

    from lodevec.embedding import Embedder
    from lodevec.ingest.distributed import RayIndexer
    from lodevec.store import Database

    proc, _ = start_moto()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            make_corpus(corpus, args.files, args.words)
            emb = Embedder.from_gguf(args.model, threads=1)
            for n in args.workers:
                coll = Database(f"s3://bench/ray{n}", resident=False).create_or_open(identity=emb.identity())
                ix = RayIndexer(coll, emb, address="auto", workers=n, threads=1,
                                batch_size=args.batch_size)
                ix._start()  # (actors up and models loaded before the clock starts)
                t0 = time.perf_counter()
                s = ix.index_paths([corpus])
                wall = time.perf_counter() - t0
                tm = ix.timings
                batches = ix._next
                driver = wall - tm["wait_s"] - tm["commit_s"] - tm["delete_s"]
                print(json.dumps({
                    "what": "ray", "workers": n, "threads_per_worker": 1, "chunks": s.chunks_embedded,
                    "tokens": s.tokens, "seconds": round(wall, 2),
                    "tokens_per_s": round(s.tokens / wall, 1), "batches": batches, "rounds": ix.rounds,
                    "driver_s_per_batch": round(driver / max(1, batches), 4),
                    "commit_s_per_round": round(tm["commit_s"] / max(1, ix.rounds), 3),
                    "worker_embed_s": round(tm["embed_s"], 2), "worker_write_s": round(tm["write_s"], 2),
                    "load": load()}), flush=True)
                ix.close()
    finally:
        ray.shutdown()
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("store")
    sp.add_argument("--rows", type=int, default=20_000)
    sp.add_argument("--dim", type=int, default=768)
    sp.add_argument("--queries", type=int, default=100)
    sp = sub.add_parser("ray")
    sp.add_argument("--model", default=str(PERF))
    sp.add_argument("--files", type=int, default=40)
    sp.add_argument("--words", type=int, default=400)
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    args = p.parse_args()
    (bench_store if args.what == "store" else bench_ray)(args)


if __name__ == "__main__":
    main()
