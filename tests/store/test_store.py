"""The LanceDB store: real tables in tmp_path, synthetic vectors, no mocks."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from conftest import run_together, unit_vectors
from lodevec import errors
from lodevec.store import RRF_K, Database, IndexPolicy, SearchResult, id_index_refresh_after

DIM = 16
IDENT = {"architecture": "nomic-bert", "model": "nomic-embed-text-v1.5.Q4_K_M.gguf",
         "digest": "a" * 64, "dim": DIM, "matryoshka_dim": None,
         "prompts": {"query": "search_query: ", "document": "search_document: "}}
WORDS = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return unit_vectors(rng, n, dim)


def make_records(n: int, start: int = 0, seed: int = 0, dim: int = DIM) -> list[dict]:
    vecs = unit(np.random.default_rng(seed), n, dim)
    return [{"id": f"doc{i}", "text": f"chunk {i} about {WORDS[i % len(WORDS)]}",
             "source": f"src/file{i // 4}.txt", "chunk": i % 4, "metadata": {"n": i},
             "content_hash": f"h{i}", "embedding": vecs[i - start]}
            for i in range(start, start + n)]


@pytest.fixture
def coll(tmp_path):
    return Database(tmp_path / "db").create_or_open("default", identity=IDENT)


@pytest.fixture
def filled(coll):
    coll.upsert(make_records(200))
    return coll


# ------------------------------------------------------------------ schema, identity, open
def test_schema_and_identity(coll, tmp_path):
    sch = coll.table.schema
    assert sch.names == ["id", "text", "source", "chunk", "metadata", "content_hash", "embedding"]
    assert sch.field("id").type == pa.string() and not sch.field("id").nullable
    assert sch.field("chunk").type == pa.int32()
    assert sch.field("embedding").type == pa.list_(pa.float32(), DIM)
    # the identity is part of the table's own schema metadata (same commit as the table)
    assert json.loads(sch.metadata[b"lodevec.identity"]) == IDENT
    # id is declared a primary key: concurrent inserts of one id conflict instead of duplicating
    assert sch.field("id").metadata
    assert coll.dim == DIM and coll.name == "default" and coll.uri == str(tmp_path / "db")

    db = Database(tmp_path / "db")
    opened = db.open()  # no identity: works and exposes the recorded one
    assert opened.identity == IDENT and opened.dim == DIM
    assert db.collection_names() == ["default"] and db.exists("default")
    assert not db.exists("other")


def test_model_mismatch(coll, tmp_path):
    db = Database(tmp_path / "db")
    other = dict(IDENT, model="all-MiniLM-L6-v2.f16.gguf", digest="b" * 64)
    with pytest.raises(errors.ModelMismatchError) as ei:
        db.open("default", identity=other)
    msg = str(ei.value)
    assert str(tmp_path / "db") in msg and "'default'" in msg
    assert "nomic-embed-text-v1.5.Q4_K_M.gguf" in msg and "all-MiniLM-L6-v2.f16.gguf" in msg
    with pytest.raises(errors.ModelMismatchError, match="dim"):
        db.create_or_open("default", identity=dict(IDENT, dim=32))
    with pytest.raises(errors.ModelMismatchError, match="architecture"):
        db.open("default", identity=dict(IDENT, architecture="bert"))
    # same file under another name is the same model
    assert db.open("default", identity=dict(IDENT, model="renamed.gguf")).dim == DIM


def test_missing_database_and_collection(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(errors.CollectionNotFoundError, match=str(missing)):
        Database(missing).open()
    assert not missing.exists()  # opening never creates the folder
    assert Database(missing).collection_names() == []
    db = Database(tmp_path / "db")
    db.create_or_open("a", identity=IDENT)
    with pytest.raises(errors.CollectionNotFoundError, match="'b'"):
        db.open("b", identity=IDENT)
    with pytest.raises(errors.CollectionNotFoundError):
        db.drop("b")
    db.drop("a")
    assert db.collection_names() == []
    with pytest.raises(errors.InputError):
        db.open("bad name!")


# ------------------------------------------------------------------ upsert
def test_upsert_insert_then_update(coll):
    res = coll.upsert(make_records(50))
    assert res["inserted"] == 50 and res["updated"] == 0
    new = make_records(10, seed=7)  # same ids doc0..doc9, other vectors
    for r in new:
        r["text"] = "replaced " + r["text"]
        r["metadata"] = json.dumps({"v": 2})
    res = coll.upsert(new)
    assert res["inserted"] == 0 and res["updated"] == 10
    assert coll.count() == 50
    got = coll.get(["doc3"], with_embedding=True)[0]
    assert got["text"].startswith("replaced ") and got["metadata"] == {"v": 2}
    np.testing.assert_allclose(got["embedding"], new[3]["embedding"])


def test_upsert_repeated_id_keeps_last(coll):
    recs = make_records(3)
    recs.append(dict(recs[0], text="last one wins"))
    coll.upsert(recs)
    assert coll.count() == 3 and coll.get(["doc0"])[0]["text"] == "last one wins"


def test_upsert_is_batched(tmp_path):
    coll = Database(tmp_path / "db").create_or_open(identity=dict(IDENT, dim=8))
    v0 = len(coll.table.list_versions())
    vecs = unit(np.random.default_rng(1), 25_000, 8)
    recs = [{"id": f"r{i}", "text": f"t{i}", "source": "s", "chunk": i} for i in range(25_000)]
    res = coll.upsert(recs, embeddings=vecs)
    # all ids are new: one append (one version) for the 25k rows
    assert res == {"inserted": 25_000, "updated": 0, "written": 25_000, "batches": 1}
    assert coll.count() == 25_000
    # the append plus at most the id/source/FTS index refresh: never one version per row
    assert len(coll.table.list_versions()) - v0 <= 5
    # stored ids are merge-inserted, 10k rows per version; new ones appended in one go
    v1 = len(coll.table.list_versions())
    recs = [{"id": f"r{i}", "text": f"v2 {i}", "source": "s", "chunk": i} for i in range(5000, 30_000)]
    res = coll.upsert(recs, embeddings=vecs)
    assert res == {"inserted": 5000, "updated": 20_000, "written": 25_000, "batches": 3}
    assert coll.count() == 30_000 and coll.get(["r29999"])[0]["text"] == "v2 29999"
    assert coll.get(["r4999", "r5000"])[0]["text"] == "t4999"
    assert len(coll.table.list_versions()) - v1 <= 6
    # small upserts merge-insert only
    assert coll.upsert(recs[:10], embeddings=vecs[:10])["batches"] == 1


def test_upsert_arrow_table(coll):
    vecs = unit(np.random.default_rng(2), 5)
    t = pa.table({"id": [f"a{i}" for i in range(5)], "text": [f"arrow {i}" for i in range(5)],
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM)})
    assert coll.upsert(t)["inserted"] == 5
    row = coll.get(["a2"])[0]
    assert row["source"] == "" and row["chunk"] == 0 and row["metadata"] == {}
    assert len(row["content_hash"]) == 64  # sha256 of the text when not given
    bad = t.set_column(2, "embedding", pa.array([list(v[:-1]) for v in vecs], pa.list_(pa.float32())))
    with pytest.raises(errors.DimensionError, match="a0"):
        coll.upsert(bad)


def test_wrong_dimension_writes_nothing(filled):
    recs = make_records(5, start=1000)
    recs[3]["embedding"] = np.ones(DIM + 1, np.float32)
    with pytest.raises(errors.DimensionError) as ei:
        filled.upsert(recs)
    msg = str(ei.value)
    assert "doc1003" in msg and str(DIM) in msg and str(DIM + 1) in msg
    assert filled.count() == 200
    with pytest.raises(errors.DimensionError):
        filled.upsert(make_records(3, start=2000), embeddings=np.ones((3, DIM - 1), np.float32))
    assert filled.count() == 200


@pytest.mark.parametrize("field,value,exc", [
    ("text", None, errors.RecordError),
    ("text", "   ", errors.RecordError),
    ("id", "", errors.RecordError),
    ("metadata", {"x": object()}, errors.RecordError),
    ("metadata", "{not json", errors.RecordError),
    ("embedding", np.full(DIM, np.nan, np.float32), errors.RecordError),
    ("embedding", np.zeros(DIM, np.float32), errors.RecordError),
])
def test_bad_record_writes_nothing(filled, field, value, exc):
    recs = make_records(4, start=500)
    if value is None:
        del recs[2][field]
    else:
        recs[2][field] = value
    with pytest.raises(exc):
        filled.upsert(recs)
    assert filled.count() == 200


# ------------------------------------------------------------------ delete, get, count, helpers
def test_delete_get_count(filled):
    assert filled.count("chunk = 0") == 50
    assert filled.delete(ids=["doc0", "doc1", "missing"]) == 2
    assert filled.count() == 198
    assert filled.delete(where="source = 'src/file2.txt'") == 4
    assert filled.count() == 194
    got = filled.get(["doc20", "doc0", "doc21"])
    assert [g["id"] for g in got] == ["doc20", "doc21"]
    assert got[0]["metadata"] == {"n": 20} and got[0]["content_hash"] == "h20"
    with pytest.raises(errors.InputError):
        filled.delete()


def test_quoted_ids(coll):
    recs = make_records(3)
    recs[0]["id"], recs[1]["id"] = "it's", "back\\slash \" and ) OR 1=1 --"
    coll.upsert(recs)
    assert [g["id"] for g in coll.get(["it's", recs[1]["id"]])] == ["it's", recs[1]["id"]]
    assert coll.delete(ids=["it's"]) == 1 and coll.count() == 2


def test_source_helpers(filled):
    assert filled.hashes_for_source("src/file1.txt") == {f"doc{i}": f"h{i}" for i in range(4, 8)}
    assert filled.ids_for_source("src/file1.txt") == ["doc4", "doc5", "doc6", "doc7"]
    assert filled.hashes_for_ids(["doc4", "nope"]) == {"doc4": "h4"}
    assert len(filled.sources()) == 50
    assert filled.source_hashes()["src/file0.txt"] == {"h0", "h1", "h2", "h3"}
    assert filled.delete_sources(["src/file0.txt", "src/file1.txt"]) == 8
    assert filled.count() == 192 and "src/file0.txt" not in filled.sources()


# ------------------------------------------------------------------ search
def test_vector_search_ranking(filled):
    q = filled.get(["doc42"], with_embedding=True)[0]["embedding"]
    hits = filled.search(q, k=5)
    assert isinstance(hits[0], SearchResult)
    assert hits[0].id == "doc42" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].metadata == {"n": 42} and hits[0].source == "src/file10.txt" and hits[0].chunk == 2
    # cosine: scaling the query does not change anything
    assert [h.id for h in filled.search(q * 7.5, k=5)] == [h.id for h in hits]


def test_where_filter(filled):
    q = filled.get(["doc42"], with_embedding=True)[0]["embedding"]
    hits = filled.search(q, k=10, where="chunk = 1")
    assert len(hits) == 10 and all(h.chunk == 1 for h in hits)
    assert "doc42" not in {h.id for h in hits}
    with pytest.raises(errors.QueryError):
        filled.search(q, where="no_such_column = 1")


def test_query_dimension(filled):
    with pytest.raises(errors.DimensionError, match=str(DIM)):
        filled.search(np.ones(DIM + 3, np.float32))
    with pytest.raises(errors.InputError):
        filled.search(None, mode="vector")


def test_fts_and_hybrid(filled):
    recs = make_records(1, start=900, seed=99)
    recs[0]["text"] = "the quokka is a small marsupial"
    filled.upsert(recs)
    hits = filled.search(None, k=5, query_text="quokka", mode="fts")
    assert [h.id for h in hits] == ["doc900"] and hits[0].score > 0
    hits = filled.search(None, k=5, query_text="cherry", mode="fts", where="chunk = 2")
    assert hits and all("cherry" in h.text and h.chunk == 2 for h in hits)

    q = recs[0]["embedding"]
    hybrid = filled.search(q, k=5, query_text="quokka marsupial", mode="hybrid")
    # first in both rankings -> RRF score 2/(60+1)
    assert hybrid[0].id == "doc900" and hybrid[0].score == pytest.approx(2 / (RRF_K + 1))
    vec_only = {h.id for h in filled.search(q, k=5)}
    assert vec_only - {"doc900"} & {h.id for h in hybrid[1:]}  # vector-only hits fused in
    assert all(h.score <= 2 / (RRF_K + 1) for h in hybrid)
    with pytest.raises(errors.InputError):
        filled.search(q, mode="hybrid")


# ------------------------------------------------------------------ maintenance
def test_optimize_reduces_versions(filled):
    for i in range(5):
        filled.upsert(make_records(3, start=300 + 3 * i))
    filled.delete(ids=["doc300"])
    before = len(filled.table.list_versions())
    res = filled.optimize(cleanup_older_than=timedelta(0))
    after = len(filled.table.list_versions())
    assert after < before and res["versions_after"] == after and after <= 2
    assert res["fragments_after"] <= res["fragments_before"]
    assert filled.count() == 214
    st = filled.stats()
    assert st["versions"] == after and st["size_bytes"] > 0 and st["fts_index"]["unindexed_rows"] == 0


def test_maintain_compacts_piled_up_fragments(tmp_path):
    db = Database(tmp_path / "db", index_policy=IndexPolicy(compact_fragments=8))
    coll = db.create_or_open(identity=IDENT)
    recs = make_records(60)
    for r in recs[:12]:  # one fragment per write
        coll.upsert([r])
    assert coll.stats()["fragments"] >= 12
    done = coll.maintain()
    assert done["compacted"].startswith(("12 ->", "13 ->")) and coll.stats()["fragments"] < 8
    assert coll.count() == 12 and coll.search(recs[5]["embedding"], k=1)[0].id == "doc5"
    # upserts run maintain every 32 writes by themselves: fragments never pile up
    for r in recs[12:]:
        coll.upsert([r])
    # 48 writes: compacted at the 32nd, 16 more fragments since
    assert coll.stats()["fragments"] <= 20 and coll.count() == 60
    assert "compacted" in coll.maintain()  # still >= 8, so due again


def test_id_index_follows_single_writes(tmp_path):
    # every write leaves rows outside the id index that merge-inserts scan: the store
    # rebuilds it after id_index_refresh_after(rows) writes (4 at this size)
    db = Database(tmp_path / "db", resident=False)
    coll = db.create_or_open(identity=IDENT)
    recs = make_records(3000)
    coll.upsert(recs)
    assert id_index_refresh_after(3000) == 4 and id_index_refresh_after(100_000) == 19
    assert coll.stats()["id_index"] == {"indexed_rows": 3000, "unindexed_rows": 0}
    for i in range(3):
        coll.upsert([dict(recs[i * 10], text=f"rev {i}")])
    assert coll.stats()["id_index"]["unindexed_rows"] == 3
    coll.upsert([dict(recs[99], text="rev 3")])
    assert coll.stats()["id_index"] == {"indexed_rows": 3000, "unindexed_rows": 0}
    assert coll.count() == 3000 and coll.get(["doc99"])[0]["text"] == "rev 3"
    # no automatic index work when it is switched off
    off = Database(tmp_path / "db", resident=False, auto_index=False).open(identity=IDENT)
    for i in range(6):
        off.upsert([dict(recs[i], text=f"off {i}")])
    assert off.stats()["id_index"]["unindexed_rows"] == 6


def test_automatic_vector_index(tmp_path):
    ident = dict(IDENT, dim=32)
    db = Database(tmp_path / "db", index_policy=IndexPolicy(threshold=5000))
    coll = db.create_or_open(identity=ident)
    coll.upsert(make_records(4000, dim=32))
    assert coll.stats()["index"]["type"] is None  # below the threshold: flat search
    coll.upsert(make_records(1200, start=4000, seed=1, dim=32))
    st = coll.stats()
    assert st["index"]["type"] == "IVF_HNSW_SQ"
    assert st["index"]["indexed_rows"] == 5200 and st["index"]["unindexed_rows"] == 0
    assert st["rows"] == 5200 and st["sources"] == 1300 and st["identity"] == ident
    # the index is used and still finds a vector's own row; new rows are found unindexed
    extra = make_records(1, start=9000, seed=3, dim=32)
    coll.upsert(extra)
    for rid, vec in (("doc4321", coll.get(["doc4321"], with_embedding=True)[0]["embedding"]),
                     ("doc9000", extra[0]["embedding"])):
        hits = coll.search(vec, k=3)
        assert hits[0].id == rid and hits[0].score == pytest.approx(1.0, abs=1e-3)
    # another process sees the same index parameters
    again = Database(tmp_path / "db").open(identity=ident)
    assert again.stats()["index"]["nprobes"] == st["index"]["nprobes"]


# ------------------------------------------------------------------ concurrency
def _writer(path: str, worker: int, rounds: int, barrier) -> None:
    coll = Database(path).open("default", identity=IDENT)
    vecs = unit(np.random.default_rng(100 + worker), 40)
    barrier.wait()
    for r in range(rounds):
        shared = [{"id": f"shared{r}-{i}", "text": f"shared by both, from {worker}",
                   "source": f"w{worker}", "embedding": vecs[i]} for i in range(20)]
        own = [{"id": f"w{worker}-{r}-{i}", "text": f"own of {worker}", "source": f"w{worker}",
                "embedding": vecs[20 + i]} for i in range(20)]
        coll.upsert(shared + own)


def test_two_processes_upserting(coll, tmp_path):
    rounds = 6
    run_together(_writer, [(str(tmp_path / "db"), w, rounds) for w in range(2)])
    rows = coll.table.search().select(["id", "text", "source"]).limit(None).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == rounds * 20 + 2 * rounds * 20  # no duplicate ids
    for r in rows:
        w = r["source"][1:]
        assert r["text"].endswith(w)  # each row is one writer's record, whole
        if r["id"].startswith("w"):
            assert r["id"].startswith(f"w{w}-")
    assert coll.count() == len(ids)
    assert os.path.isdir(tmp_path / "db" / "default.lance")
