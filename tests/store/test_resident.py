"""The resident search tier: its kernels, the snapshot, and how the store keeps it exactly
at the table's version (own writes applied, anything else reloaded), against LanceDB."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import run_together, unit_vectors
from lodevec import errors, kernels
from lodevec.store import Database
from lodevec.store.resident import Snapshot, candidate_count

DIM = 24
IDENT = {"architecture": "nomic-bert", "model": "m.gguf", "digest": "b" * 64, "dim": DIM}


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return unit_vectors(rng, n, dim)


def records(n, start=0, seed=0, dim=DIM, tag="v1"):
    vecs = unit(np.random.default_rng(seed), n, dim)
    return [{"id": f"doc{i}", "text": f"{tag} chunk {i}", "source": f"f{i // 10}.txt",
             "chunk": i % 10, "metadata": {"i": i}, "embedding": vecs[i - start]}
            for i in range(start, start + n)]


def exact_ids(vecs: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[str]:
    s = vecs @ (q / np.linalg.norm(q))
    return [ids[i] for i in np.argsort(-s, kind="stable")[:k]]


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("dim", [1, 7, 63, 64, 65, 130, 768])
def test_scan_matches_integer_reference(dim, threads):
    rng = np.random.default_rng(dim)
    x = unit(rng, 301, dim)
    codes, scales = kernels.quantize_codes(x)
    assert codes.dtype == np.uint8 and codes.min() >= 1 and codes.max() <= 255
    # the codes round-trip each row to within half a step
    back = (codes.astype(np.float32) - 128) * scales[:, None]
    assert np.all(np.abs(back - x) <= scales[:, None] * 0.5 + 1e-7)
    q = unit(rng, 1, dim)[0]
    qc, qsum, qscale = kernels.quantize_query(q)
    assert qsum == int(qc.astype(np.int64).sum()) and np.abs(qc).max() == 127
    ref = scales * (codes.astype(np.int64) @ qc.astype(np.int64) - 128 * qsum).astype(np.float32)
    out = kernels.scan_codes(qc, qsum, codes, scales)  # with 1 and 2 threads (fixture)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert np.abs(out * qscale - x @ q).max() < 0.05  # an estimate of the cosine
    rows = np.array([300, 0, 17, 17, 5], np.int64)
    np.testing.assert_array_equal(kernels.scan_codes(qc, qsum, codes, scales, rows=rows), out[rows])
    np.testing.assert_array_equal(kernels.scan_codes(qc, qsum, codes, scales, n=10), out[:10])


def test_scan_validates_before_running():
    x = unit(np.random.default_rng(0), 8, 16)
    codes, scales = kernels.quantize_codes(x)
    qc, qsum, _ = kernels.quantize_query(x[0])
    with pytest.raises(IndexError, match="row 8 outside"):
        kernels.scan_codes(qc, qsum, codes, scales, rows=np.array([0, 8], np.int64))
    with pytest.raises(IndexError, match="row -1 outside"):
        kernels.scan_codes(qc, qsum, codes, scales, rows=np.array([-1], np.int64))
    with pytest.raises(ValueError, match="n=9 outside"):
        kernels.scan_codes(qc, qsum, codes, scales, n=9)
    with pytest.raises(ValueError, match="codes must be"):
        kernels.scan_codes(qc, qsum, codes[:, :8].copy(), scales)
    with pytest.raises(ValueError, match="codes must be"):
        kernels.scan_codes(qc, qsum, codes.astype(np.int8), scales)
    with pytest.raises(ValueError, match="5 scales for 8 rows"):
        kernels.scan_codes(qc, qsum, codes, scales[:5].copy())
    with pytest.raises(ValueError, match="q_codes"):
        kernels.scan_codes(qc.astype(np.int16), qsum, codes, scales)
    with pytest.raises(ValueError, match="rows must be"):
        kernels.scan_codes(qc, qsum, codes, scales, rows=np.array([0], np.int32))
    for bad in (np.zeros(16, np.float32), np.zeros(0, np.float32), np.array([np.nan, 1], np.float32)):
        with pytest.raises(ValueError, match="zero or not finite"):
            kernels.quantize_query(bad)
    # a zero row quantizes to scale 0 (scores 0), never NaN
    c, s = kernels.quantize_codes(np.zeros((2, 16), np.float32))
    assert s.tolist() == [0.0, 0.0] and (c == 128).all()


# ------------------------------------------------------------------ snapshot
def test_snapshot_search_equals_exact_and_follows_writes():
    import pyarrow as pa

    rng = np.random.default_rng(3)
    n = 3000
    vecs = unit(rng, n)
    ids = [f"r{i}" for i in range(n)]

    def table(sel, v):
        return pa.table({"id": [ids[i] for i in sel], "text": [f"t{i}" for i in sel],
                         "source": ["s"] * len(sel), "chunk": list(range(len(sel))),
                         "metadata": ["{}"] * len(sel),
                         "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM)})

    snap = Snapshot.from_arrow(table(range(n), vecs), DIM, version=7)
    assert len(snap) == n and snap.version == 7 and snap.nbytes > n * DIM * 5
    queries = unit(rng, 40)
    for k in (1, 10, 50):
        for q in queries:
            slots, scores = snap.search(q, k)
            assert [snap.ids[s] for s in slots] == exact_ids(vecs, ids, q, k)
            np.testing.assert_allclose(scores, np.sort(vecs @ q)[::-1][:k], atol=1e-6)
    # replace 100 vectors, delete 1100 (compacts: more than 1024 dead slots)
    new = unit(rng, 100)
    snap.upsert(table(range(100), new))
    vecs[:100] = new
    gone = set(range(1000, 2100))
    assert snap.delete([ids[i] for i in gone] + ["nope"]) == 1100
    assert snap.dead == 0 and len(snap) == n - 1100  # compacted
    keep = [i for i in range(n) if i not in gone]
    for q in queries[:10]:
        slots, _ = snap.search(q, 10)
        assert [snap.ids[s] for s in slots] == [ids[keep[j]] for j in
                                                 np.argsort(-(vecs[keep] @ q), kind="stable")[:10]]
    # a few deletions stay as dead slots, masked out of full and filtered scans
    snap.delete([ids[0], ids[1]])
    assert snap.dead == 2
    slots, _ = snap.search(vecs[0], 5)
    assert ids[0] not in {snap.ids[s] for s in slots}
    rows = snap.slots_of([ids[0], ids[2], ids[3]])
    assert len(rows) == 2  # the deleted id has no slot any more
    slots, scores = snap.search(vecs[3], 5, rows=rows)
    assert [snap.ids[s] for s in slots] == [ids[3], ids[2]] and scores[0] == pytest.approx(1.0, abs=1e-6)
    assert snap.search(vecs[3], 5, rows=np.empty(0, np.int64))[0].size == 0
    assert candidate_count(10) >= 10


@pytest.mark.parametrize("dead", [0, 3])
def test_exact_snapshot_search_scores_every_row(dead):
    import pyarrow as pa

    rng = np.random.default_rng(4)
    n = 2000
    vecs = unit(rng, n)
    ids = [f"r{i}" for i in range(n)]
    snap = Snapshot.from_arrow(pa.table({
        "id": ids, "text": ids, "source": ["s"] * n, "chunk": list(range(n)), "metadata": ["{}"] * n,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM)}), DIM, 1)
    alive = np.ones(n, bool)
    if dead:
        snap.delete(ids[:dead])
        alive[:dead] = False
    assert snap.dead == dead
    live = np.flatnonzero(alive)
    for q in unit(rng, 20):
        truth = live[np.argsort(-(vecs[live] @ q), kind="stable")]
        for k in (1, 10, n + 5):
            slots, scores = snap.search(q, k, exact=True)
            assert [snap.ids[s] for s in slots] == [ids[i] for i in truth[:k]]
            np.testing.assert_allclose(scores, vecs[truth[:k]] @ q, atol=1e-6)
        # restricted to a filter's slots (including a dead one): the same order among them
        sub = snap.slots_of(ids[:50:3] + ids[1500:1510])
        rows = np.concatenate([sub, [0]]) if dead else sub
        slots, _ = snap.search(q, 7, rows=rows, exact=True)
        allowed = [i for i in truth if ids[i] in set(ids[:50:3] + ids[1500:1510])]
        assert [snap.ids[s] for s in slots] == [ids[i] for i in allowed[:7]]
    assert snap.search(vecs[5], 3, rows=np.empty(0, np.int64), exact=True)[0].size == 0


def test_empty_snapshot():
    snap = Snapshot(DIM, 0)
    slots, scores = snap.search(np.ones(DIM, np.float32), 10)
    assert slots.size == 0 and scores.size == 0


# ------------------------------------------------------------------ store integration
@pytest.fixture
def pair(tmp_path):
    """A resident collection and a LanceDB-only view of the same table."""
    db = Database(tmp_path / "db")
    coll = db.create_or_open(identity=IDENT)
    coll.upsert(records(500))
    lance = Database(tmp_path / "db", resident=False).open(identity=IDENT)
    return coll, lance


def same_hits(a, b):
    assert [h.id for h in a] == [h.id for h in b]
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=1e-5)
        assert (x.text, x.source, x.chunk, x.metadata) == (y.text, y.source, y.chunk, y.metadata)


def test_resident_search_equals_lancedb(pair):
    coll, lance = pair
    info = coll.load_resident()
    assert info["loaded"] and info["rows"] == 500 and info["version"] == coll.version()
    rng = np.random.default_rng(9)
    for q in unit(rng, 20):
        same_hits(coll.search(q, k=10), lance.search(q, k=10))
        same_hits(coll.search(q, k=7, where="chunk < 3 AND source != 'f2.txt'"),
                  lance.search(q, k=7, where="chunk < 3 AND source != 'f2.txt'"))
        same_hits(coll.search(q, k=5, query_text="chunk 42", mode="hybrid"),
                  lance.search(q, k=5, query_text="chunk 42", mode="hybrid"))
        # exact search: every row scored, from the snapshot and from LanceDB alike
        same_hits(coll.search(q, k=10, exact=True), lance.search(q, k=10, exact=True))
        same_hits(coll.search(q, k=10, exact=True, where="chunk < 5"),
                  lance.search(q, k=10, exact=True, where="chunk < 5"))
    assert coll.search(unit(rng, 1)[0], k=5, where="chunk > 100") == []
    assert len(coll.search(unit(rng, 1)[0], k=1000)) == 500
    with pytest.raises(errors.QueryError):
        coll.search(unit(rng, 1)[0], k=5, where="no_such_column = 1")
    assert coll.resident_info()["loads"] == 1  # every search above used the one snapshot


def test_own_writes_keep_the_snapshot_current(pair):
    coll, lance = pair
    coll.load_resident()
    rng = np.random.default_rng(11)
    # first write after loading: an update in place (the loaded vectors were read-only)
    u = unit(rng, 1)[0]
    coll.upsert([{"id": "doc7", "text": "first write", "embedding": u}])
    assert coll.search(u, k=1)[0].text == "first write"
    # a single upsert (merge-insert): found at once, with its text
    v = unit(rng, 1)[0]
    coll.upsert([{"id": "fresh", "text": "brand new", "embedding": v}])
    hit = coll.search(v, k=1)[0]
    assert (hit.id, hit.text) == ("fresh", "brand new") and hit.score == pytest.approx(1.0, abs=1e-6)
    # the resident copy knows which ids are stored: a small upsert appends its new rows
    # (one add) and merge-inserts only the stored ones
    w = unit(rng, 2)
    out = coll.upsert([{"id": "doc8", "text": "eight", "embedding": w[0]},
                       {"id": "fresh2", "text": "new two", "embedding": w[1]}])
    assert (out["inserted"], out["updated"], out["batches"]) == (1, 1, 2)
    assert [coll.search(x, k=1)[0].text for x in w] == ["eight", "new two"]
    assert coll.count() == lance.count() == 502
    # an update moves a row's vector
    coll.upsert([{"id": "doc3", "text": "moved", "embedding": -v}])
    assert coll.search(-v, k=1)[0].text == "moved"
    # a bulk upsert (append of new ids + merge-insert of stored ones)
    coll.upsert(records(2500, start=400, seed=5, tag="v2"))
    # deletes by id, by filter, by source
    assert coll.delete(["doc0", "doc1", "nope"]) == 2
    assert coll.delete(where="chunk = 9") == 290
    assert coll.delete_sources(["f5.txt", "f6.txt"]) == 18
    assert coll.resident_info()["loads"] == 1  # never reloaded: each write was applied
    assert coll.resident_info()["rows"] == coll.count() == lance.count()
    for q in unit(rng, 15):
        same_hits(coll.search(q, k=10), lance.search(q, k=10))
        same_hits(coll.search(q, k=10, where="source LIKE 'f1%'"),
                  lance.search(q, k=10, where="source LIKE 'f1%'"))
    # index builds change no rows: the snapshot survives them
    coll.maintain()
    coll.build_vector_index()
    coll.drop_vector_index()
    coll.search(unit(rng, 1)[0], k=3)
    assert coll.resident_info()["loads"] == 1 and coll.resident_info()["version"] == coll.version()


def test_foreign_writes_are_never_missed(pair, tmp_path):
    coll, lance = pair
    coll.load_resident()
    v = unit(np.random.default_rng(12), 1)[0]
    # another handle (as another process would) writes: the snapshot is now stale
    lance.upsert([{"id": "theirs", "text": "written elsewhere", "embedding": v}])
    assert coll.search(v, k=1)[0].id == "theirs"  # answered by LanceDB, current
    coll._tier.wait(30)  # that search started a background reload
    info = coll.resident_info()
    assert info["loaded"] and info["version"] == coll.version() and info["loads"] == 2
    assert coll.search(v, k=1)[0].id == "theirs"
    lance.delete(["theirs"])
    assert "theirs" not in {h.id for h in coll.search(v, k=5)}
    # compaction renumbers rows in commits of unknown count: reloaded, results unchanged
    before = [h.id for h in coll.search(v, k=10)]
    coll.optimize(cleanup_older_than=0)
    assert not coll.resident_info()["loaded"]
    assert [h.id for h in coll.search(v, k=10)] == before


def test_budget_and_opt_out(tmp_path):
    db = Database(tmp_path / "db", resident_budget=1000)
    coll = db.create_or_open(identity=IDENT)
    coll.upsert(records(100))
    info = coll.load_resident()
    assert not info["loaded"] and info["over_budget"]
    q = records(1)[0]["embedding"]
    assert coll.search(q, k=1)[0].id == "doc0"  # LanceDB serves it
    off = Database(tmp_path / "db", resident=False).open(identity=IDENT)
    assert off.resident_info() == {"loaded": False, "enabled": False}
    with pytest.raises(errors.InputError, match="resident=False"):
        off.load_resident()


def test_searching_while_writing(pair):
    coll, _ = pair
    coll.load_resident()
    rng = np.random.default_rng(13)
    vecs = unit(rng, 400)
    errs: list[BaseException] = []

    def write():
        try:
            for i in range(0, 400, 20):
                coll.upsert([{"id": f"w{i + j}", "text": f"w {i + j}", "embedding": vecs[i + j]}
                             for j in range(20)])
        except BaseException as e:  # pragma: no cover - reported below
            errs.append(e)

    t = threading.Thread(target=write)
    t.start()
    while t.is_alive():
        hits = coll.search(vecs[0], k=5)
        assert len(hits) == 5 and hits == sorted(hits, key=lambda h: -h.score)
    t.join()
    assert not errs
    for i in (0, 199, 399):  # every write is visible
        assert coll.search(vecs[i], k=1)[0].id == f"w{i}"


# ------------------------------------------------------------------ bulk appends
def _bulk_writer(path: str, worker: int, barrier) -> None:
    coll = Database(path, resident=False).open("default", identity=IDENT)
    recs = records(3000, start=worker * 1500, seed=20 + worker, tag=f"w{worker}")
    barrier.wait()
    coll.upsert(recs)


def test_two_processes_bulk_appending_overlapping_ids(tmp_path):
    Database(tmp_path / "db").create_or_open(identity=IDENT)
    run_together(_bulk_writer, [(str(tmp_path / "db"), w) for w in range(2)])
    coll = Database(tmp_path / "db", resident=False).open(identity=IDENT)
    rows = coll.table.search().select(["id", "text"]).limit(None).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4500  # 1500 ids written by both, none twice
    for r in rows:
        i = int(r["id"][3:])
        assert r["text"].startswith("w0" if i < 1500 else ("w1" if i >= 3000 else ("w0", "w1")))


def test_background_load_starts_at_the_second_search(tmp_path):
    coll = Database(tmp_path / "db").create_or_open(identity=IDENT)
    coll.upsert(records(50))
    q = records(1)[0]["embedding"]
    assert coll.search(q, k=1)[0].id == "doc0"  # LanceDB; a one-search script loads nothing
    info = coll.resident_info()
    assert not info["loaded"] and not info["loading"] and info["loads"] == 0
    assert coll.search(q, k=1)[0].id == "doc0"
    coll._tier.wait(30)
    assert coll.resident_info()["loaded"] and coll.resident_info()["loads"] == 1
