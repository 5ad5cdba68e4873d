"""Distributed indexing on a local Ray cluster (2 CPUs, started here), writing to the
loopback S3 server; compared with a single-process index of the same folder."""

from __future__ import annotations

import os
import random
import signal

import pytest
from s3server import bucket, s3_client, s3_db, s3_env, s3_server  # noqa: F401 (fixtures)

from conftest import NOMIC, cosine, run_cli
from lodevec import errors
from lodevec.embedding import Embedder
from lodevec.ingest import Indexer
from lodevec.store import Database

ray = pytest.importorskip("ray", reason="the Ray tests need ray (pip install 'lodevec[test]')")

from lodevec.ingest.distributed import RayIndexer, _EmbedWorker  # noqa: E402

MODEL = NOMIC / "tiny-nomic-v1.5.f16.gguf"
WORDS = ("alpha beta gamma delta rust python search vector index lance ray cluster token "
         "embed model chunk file shard round commit").split()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster on this machine (no dashboard), shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny():
    return Embedder.from_gguf(MODEL, threads=1)


def make_corpus(root, n: int = 24, seed: int = 0):
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        paras = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160))) for _ in range(3)]
        (root / f"f{i:02d}.txt").write_text("\n\n".join(paras))
    return root


def rows_of(coll) -> dict[str, dict]:
    rows = coll.table.search().select(["id", "text", "content_hash", "source", "chunk", "embedding"]
                                      ).limit(None).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate rows"
    return {r["id"]: r for r in rows}


def same_index(ray_coll, local_coll) -> None:
    a, b = rows_of(ray_coll), rows_of(local_coll)
    assert set(a) == set(b)
    for i, r in a.items():
        assert (r["text"], r["content_hash"], r["source"], r["chunk"]) == (
            b[i]["text"], b[i]["content_hash"], b[i]["source"], b[i]["chunk"])
        assert cosine(r["embedding"], b[i]["embedding"]) >= 0.99999, i


def ray_index(coll, tiny, corpus, **kw):
    ix = RayIndexer(coll, tiny, address="auto", workers=2, threads=1, batch_size=8,
                    chunk_tokens=64, overlap=8, **kw)
    try:
        return ix, ix.index_paths([corpus])
    finally:
        ix.close()


def local_index(tmp_path, tiny, corpus, name="local"):
    coll = Database(tmp_path / name, resident=False).create_or_open(identity=tiny.identity())
    Indexer(coll, tiny, batch_size=8, chunk_tokens=64, overlap=8).index_paths([corpus])
    return coll


def test_same_index_as_one_process_and_incremental(ray_cluster, tiny, s3_env, s3_db, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    coll = Database(s3_db, resident=False).create_or_open(identity=tiny.identity())
    ix, s = ray_index(coll, tiny, corpus)
    assert s.chunks_embedded == s.chunks > 24 and ix.rounds >= 2  # (rounds of 8 batches)
    same_index(coll, local_index(tmp_path, tiny, corpus))
    # a changed file, a removed one, a new one: the same as a single-process rerun
    (corpus / "f03.txt").write_text("a short new text about lance fragments")
    (corpus / "f05.txt").unlink()
    (corpus / "new.txt").write_text("ray actors embed batches " * 30)
    ix, s = ray_index(coll, tiny, corpus)
    assert s.chunks_removed >= 1 and 0 < s.chunks_embedded < s.chunks
    assert not any(r["source"].endswith("f05.txt") for r in rows_of(coll).values())
    same_index(coll, local_index(tmp_path, tiny, corpus, name="local2"))
    # nothing changed: nothing embedded, nothing committed
    ix, s = ray_index(coll, tiny, corpus)
    assert s.chunks_embedded == 0 and ix.rounds == 0


def test_killed_worker_loses_nothing(ray_cluster, tiny, s3_env, s3_db, tmp_path):
    """kill -9 of a worker while batches are in flight: Ray restarts it and retries the
    batch; the killed attempt's fragment is never committed, so no duplicates."""
    corpus = make_corpus(tmp_path / "corpus", n=30, seed=1)
    coll = Database(s3_db, resident=False).create_or_open(identity=tiny.identity())
    killed = []
    box = {}

    def progress(files, chunks, tokens):
        ix = box.get("ix")
        if ix is not None and ix._actors and not killed and files >= 8:
            pid = ix.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    ix = RayIndexer(coll, tiny, address="auto", workers=2, threads=1, batch_size=8,
                    chunk_tokens=64, overlap=8, progress=progress)
    box["ix"] = ix
    try:
        ix.index_paths([corpus])
        pids = ix.worker_pids()
    finally:
        ix.close()
    assert killed and killed[0] not in pids  # the actor came back as a new process
    same_index(coll, local_index(tmp_path, tiny, corpus))


def test_workers_check_the_model(tmp_path, tiny):
    """A worker whose model file is not the collection's model refuses to start."""
    with pytest.raises(errors.ModelMismatchError, match="not the model the collection was made with"):
        _EmbedWorker(str(MODEL), "0" * 64, 1, None, str(tmp_path / "x.lance"), None, None)


def test_cli_ray(ray_cluster, tiny, s3_env, s3_db, tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus", n=6, seed=2)
    code, out = run_cli(["index", "--db", s3_db, "--model", str(MODEL), "--ray", "--ray-workers", "2",
                         "-t", "1", "--batch-size", "8", "--chunk-tokens", "64", "--overlap", "8",
                         "--json", str(corpus)])
    assert code == 0, capsys.readouterr().err
    local = local_index(tmp_path, tiny, corpus)
    same_index(Database(s3_db, resident=False).open(), local)
    code, _ = run_cli(["index", "--db", s3_db, "--model", str(MODEL), "--ray", "--ray-workers", "0",
                       str(corpus)])
    assert code == 2 and "--ray-workers must be >= 1" in capsys.readouterr().err
