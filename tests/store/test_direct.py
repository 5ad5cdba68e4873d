"""Local tables read through lance directly agree with LanceDB: same ids, scores, order.

Real tables in tmp_path (an IVF_HNSW_SQ index over most rows, rows written after it,
deletions), searched once through :class:`lodevec.store._direct.DirectTable` (what
``Database.open`` returns locally) and once through the LanceDB table itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import unit_vectors
from lodevec import errors
from lodevec.store import Database, IndexPolicy
from lodevec.store._direct import DirectTable
from lodevec.store.collection import Collection

DIM = 32
IDENT = {"architecture": "bert", "model": "m.gguf", "digest": "b" * 64, "dim": DIM,
         "prompts": {}}
WORDS = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]


def records(start: int, n: int, seed: int) -> list[dict]:
    vecs = unit_vectors(np.random.default_rng(seed), n, DIM)
    return [{"id": f"d{i}", "text": f"chunk {i} about {WORDS[i % 8]} and {WORDS[(i * 3) % 8]}",
             "source": f"src/f{i % 37}.txt", "chunk": i % 5, "metadata": {"n": i},
             "embedding": vecs[i - start]} for i in range(start, start + n)]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("direct") / "db"
    db = Database(path, resident=False, auto_index=False, index_policy=IndexPolicy(threshold=256))
    coll = db.create_or_open("default", identity=IDENT)
    coll.upsert(records(0, 1500, seed=1))
    coll.build_vector_index()
    coll.upsert(records(1500, 300, seed=2))  # not in the vector index: scanned flat
    coll.delete(ids=[f"d{i}" for i in range(0, 1800, 97)])
    return path


def both(path) -> tuple[Collection, Collection]:
    """The collection read through lance, and the same one through LanceDB."""
    db = Database(path, resident=False, auto_index=False)
    direct = db.open("default")
    assert isinstance(direct._t.handle, DirectTable) and not direct._t.handle.delegated
    via_lancedb = Collection(db, db._open_lancedb_table("default"), "default", direct.identity)
    assert not isinstance(via_lancedb._t.handle, DirectTable)
    return direct, via_lancedb


def as_tuples(hits):
    return [(h.id, h.score, h.text, h.source, h.chunk, h.metadata) for h in hits]


FILTERS = [None, "chunk < 2", "source = 'src/f3.txt'", "source LIKE 'src/f1%' AND chunk >= 1",
           "id IN ('d5', 'd6', 'd1600', 'd97')", "chunk = 99"]


@pytest.mark.parametrize("where", FILTERS)
@pytest.mark.parametrize("exact", [False, True], ids=["index", "exact"])
def test_vector_search_agrees(db_path, where, exact):
    direct, ref = both(db_path)
    assert direct._indexes.vector_params() == ref._indexes.vector_params() is not None
    for seed in range(4):
        q = unit_vectors(np.random.default_rng(100 + seed), 1, DIM)[0]
        for k in (1, 10, 57):
            got = as_tuples(direct.search(q, k=k, where=where, exact=exact))
            want = as_tuples(ref.search(q, k=k, where=where, exact=exact))
            assert got == want  # ids, scores (bit for bit), payload and order
            if where is None:
                assert len(got) == k
    assert not direct._t.handle.delegated  # no LanceDB call was needed


def test_small_table_without_vector_index_agrees(tmp_path):
    coll = Database(tmp_path / "db", resident=False).create_or_open("default", identity=IDENT)
    coll.upsert(records(0, 120, seed=3))
    direct, ref = both(tmp_path / "db")
    assert direct._indexes.vector_params() is None
    q = unit_vectors(np.random.default_rng(7), 1, DIM)[0]
    for where in (None, "chunk = 1"):
        assert as_tuples(direct.search(q, k=15, where=where)) == as_tuples(
            ref.search(q, k=15, where=where))


def test_reads_agree(db_path):
    direct, ref = both(db_path)
    assert direct.count() == ref.count() == 1800 - len(range(0, 1800, 97))
    assert direct.count("chunk = 2") == ref.count("chunk = 2")
    assert direct.sources() == ref.sources()
    assert direct.hashes_by_source() == ref.hashes_by_source()
    assert direct.ids_for_source("src/f4.txt") == ref.ids_for_source("src/f4.txt")
    ids = ["d3", "d1700", "d0", "nope"]
    got, want = direct.get(ids, with_embedding=True), ref.get(ids, with_embedding=True)
    assert [r["id"] for r in got] == [r["id"] for r in want] == ["d3", "d1700"]
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a.pop("embedding"), b.pop("embedding")) and a == b
    assert direct.version() == ref.version()
    sd, sr = direct.stats(), ref.stats()
    assert sd == sr
    late = 300 - len(range(1552, 1800, 97))  # rows written after the index, less deletions
    assert sd["index"]["type"] == "IVF_HNSW_SQ" and sd["index"]["unindexed_rows"] == late
    assert not direct._t.handle.delegated


def test_collection_names_as_lancedb_lists_them(db_path, tmp_path):
    db = Database(db_path)
    db.create_or_open("other_1", identity=IDENT)
    (db_path / "not-a-table").mkdir(exist_ok=True)
    listed = db._connect().list_tables().tables
    assert db.collection_names() == sorted(listed) == ["default", "other_1"]
    db.drop("other_1")
    assert Database(tmp_path / "nothing-here").collection_names() == []


def test_missing_collection_and_bad_filter(db_path):
    db = Database(db_path, resident=False)
    with pytest.raises(errors.CollectionNotFoundError, match="'nope' does not exist.*default"):
        db.open("nope")
    coll = db.open("default")
    q = unit_vectors(np.random.default_rng(1), 1, DIM)[0]
    with pytest.raises(errors.QueryError, match="no_such_column") as e:
        coll.search(q, k=3, where="no_such_column = 1")
    assert ".rs:" not in str(e.value)  # no Rust source location
    for bad in ("chunk = = 1", "no_such_column = 1"):
        with pytest.raises(errors.QueryError, match="bad query or filter") as e:
            coll.count(bad)
        assert ".rs:" not in str(e.value)
        with pytest.raises(errors.QueryError, match="bad query or filter"):
            coll._t.scan(["id"], bad)  # the scan every lookup makes



def test_sees_other_writers_and_writes_through_lancedb(tmp_path):
    path = tmp_path / "db"
    Database(path).create_or_open("default", identity=IDENT).upsert(records(0, 50, seed=4))
    reader = Database(path, resident=False).open("default")
    assert reader.count() == 50
    # another handle (as another process would) commits: the next read sees it
    Database(path).open("default").upsert(records(50, 10, seed=5))
    assert reader.count() == 60 and "d55" in {r["id"] for r in reader.get(["d55"])}
    q = np.asarray(records(50, 10, seed=5)[5]["embedding"])  # d55's own vector
    assert reader.search(q, k=1)[0].id == "d55"
    # a write through the direct handle goes to LanceDB, which answers from then on
    assert reader.delete(ids=["d55"]) == 1
    assert reader._t.handle.delegated
    assert reader.count() == 59 and reader.search(q, k=1)[0].id != "d55"
    assert type(reader.table).__name__ == "LanceTable"


def test_full_text_search_goes_to_lancedb(db_path):
    direct, ref = both(db_path)
    q = unit_vectors(np.random.default_rng(2), 1, DIM)[0]
    got = direct.search(q, k=5, query_text="banana", mode="hybrid")
    assert as_tuples(got) == as_tuples(ref.search(q, k=5, query_text="banana", mode="hybrid"))
    assert direct._t.handle.delegated
