"""No non-finite vector, lone surrogate or blank text enters the store, by any write
path (issue 16): dicts with vectors, dicts with ``embeddings=``, Arrow tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from test_store import DIM, IDENT, make_records, unit

from lodevec import errors
from lodevec.store import Database


@pytest.fixture
def coll(tmp_path):
    c = Database(tmp_path / "db").create_or_open("default", identity=IDENT)
    c.upsert(make_records(10))
    return c


def _bad_vectors():
    vecs = unit(np.random.default_rng(3), 4)
    out = []
    for value in (np.nan, np.inf, -np.inf):
        v = vecs.copy()
        v[2, 5] = value
        out.append(v)
    huge = vecs.copy()
    huge[2] = 1e30  # finite, but its squared norm overflows float32
    out.append(huge)
    return out


@pytest.mark.parametrize("vecs", _bad_vectors(), ids=["nan", "inf", "-inf", "overflow"])
def test_every_write_path_refuses_non_finite_vectors(coll, vecs):
    recs = make_records(4, start=100)
    for r, v in zip(recs, vecs, strict=True):
        r["embedding"] = v
    with pytest.raises(errors.RecordError, match="doc102"):
        coll.upsert(recs)
    plain = [{k: v for k, v in r.items() if k != "embedding"} for r in recs]
    with pytest.raises(errors.RecordError, match="doc102"):
        coll.upsert(plain, embeddings=vecs)
    with pytest.raises(errors.RecordError, match="doc102"):
        coll.upsert(plain, embeddings=vecs.astype(np.float64))
    table = pa.table({"id": [r["id"] for r in recs], "text": [r["text"] for r in recs],
                      "embedding": pa.FixedSizeListArray.from_arrays(
                          pa.array(vecs.ravel().astype(np.float32)), DIM)})
    with pytest.raises(errors.RecordError, match="doc102"):
        coll.upsert(table)
    as_lists = table.set_column(2, "embedding", pa.array([list(map(float, v)) for v in vecs],
                                                         pa.list_(pa.float64())))
    with pytest.raises(errors.RecordError, match="doc102"):
        coll.upsert(as_lists)
    assert coll.count() == 10


def test_float64_beyond_float32_is_refused(coll):
    recs = make_records(2, start=200)
    recs[1]["embedding"] = np.full(DIM, 1e300)  # inf once stored as float32
    with pytest.raises(errors.RecordError, match="doc201"):
        coll.upsert(recs)
    assert coll.count() == 10


@pytest.mark.parametrize("field,value", [
    ("text", "\x00\x01\x02"), ("text", " \x00\u200b\n"), ("text", "ok \ud800"),
    ("id", "id-\udfff"), ("source", "\ud800.txt"), ("metadata", {"k": "\ud800"}),
])
def test_blank_and_unencodable_text_is_refused(coll, field, value):
    recs = make_records(3, start=300)
    recs[1][field] = value
    with pytest.raises(errors.RecordError, match="record 1"):
        coll.upsert(recs)
    assert coll.count() == 10


def test_arrow_control_only_text_is_refused(coll):
    vecs = unit(np.random.default_rng(4), 2)
    t = pa.table({"id": ["a", "b"], "text": ["fine", "\x00\x00"],
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM)})
    with pytest.raises(errors.RecordError, match="row 1"):
        coll.upsert(t)
    assert coll.count() == 10


@pytest.mark.parametrize("where", ["chunk = 1; DROP TABLE x", "chunk = 1 -- and chunk = 2",
                                   "chunk = 1 /* and chunk = 2 */", "chunk = 1;"])
def test_where_refuses_what_it_would_ignore(coll, where):
    q = unit(np.random.default_rng(5), 1)[0]
    for call in (lambda: coll.search(q, where=where), lambda: coll.count(where),
                 lambda: coll.delete(where=where)):
        with pytest.raises(errors.QueryError, match="outside a string literal") as ei:
            call()
        assert where in str(ei.value)
    assert coll.count() == 10


def test_where_allows_separators_inside_literals(coll):
    coll.upsert([{**make_records(1, start=400)[0], "source": "a;b--c/*d.txt"}])
    assert coll.count("source = 'a;b--c/*d.txt'") == 1
    assert coll.count("source = 'it''s; -- fine' OR chunk > -1") == 11
