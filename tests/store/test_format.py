"""What a table records about itself (format, identity), the record validator the server,
ingester and CLI share, and the index-kind registry the bench and CLI read."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import unit_vectors
from lodevec import errors
from lodevec.store import Database, IndexPolicy, stored_dim, validate_record
from lodevec.store.identity import FORMAT_KEY, FORMAT_VERSION

DIM = 8
IDENT = {"architecture": "bert", "model": "m.gguf", "digest": "c" * 64, "dim": DIM}


def _rewrite_metadata(db: Database, name: str, change) -> None:
    """Rewrite table ``name`` with its schema metadata passed through ``change(dict)``."""
    table = db.open_table(name).to_arrow()
    meta = change(dict(table.schema.metadata))
    db._connect().create_table(name, data=table.replace_schema_metadata(meta), mode="overwrite")
    assert db.open_table(name).schema.metadata == meta


@pytest.fixture
def db(tmp_path):
    db = Database(tmp_path / "db", resident=False)
    coll = db.create_or_open("default", identity=IDENT)
    vecs = unit_vectors(np.random.default_rng(0), 5, DIM)
    coll.upsert([{"id": f"d{i}", "text": f"text {i}", "embedding": vecs[i]} for i in range(5)])
    assert coll.table.schema.metadata[FORMAT_KEY.encode()] == FORMAT_VERSION.encode() == b"1"
    return db


def test_a_newer_format_is_refused_by_name(db):
    _rewrite_metadata(db, "default", lambda m: {**m, FORMAT_KEY.encode(): b"2"})
    for opening in (lambda: db.open("default"), lambda: db.open("default", identity=IDENT),
                    lambda: db.create_or_open("default", identity=IDENT),
                    lambda: db.stored_identity("default")):
        with pytest.raises(errors.StoreError) as ei:
            opening()
        msg = str(ei.value)
        assert db.uri in msg and "'default'" in msg and FORMAT_KEY in msg
        assert "'2'" in msg and "format 1" in msg


def test_a_table_without_the_format_key_opens_as_before(db):
    _rewrite_metadata(db, "default", lambda m: {k: v for k, v in m.items() if k != FORMAT_KEY.encode()})
    coll = db.open("default", identity=IDENT)
    assert coll.count() == 5 and coll.identity == IDENT
    q = coll.get(["d3"], with_embedding=True)[0]["embedding"]
    assert coll.search(q, k=1)[0].id == "d3"


def test_stored_identity_and_dim(db):
    assert db.stored_identity("nope") is None
    stored = db.stored_identity("default")
    assert stored == IDENT
    assert stored_dim(stored) == DIM and stored_dim(None) is None
    assert stored_dim(stored, digest="c" * 64) == DIM
    assert stored_dim(stored, digest="d" * 64) is None  # another model file: its own default
    assert stored_dim(dict(IDENT, matryoshka_dim=4)) == 4


def test_validate_record_is_the_upserts_check(db):
    rec = validate_record({"id": 7, "text": "hello", "metadata": {"a": 1}, "chunk": np.int64(2)})
    assert rec == {"id": "7", "text": "hello", "source": "", "chunk": 2, "metadata": '{"a": 1}',
                   "content_hash": rec["content_hash"]}
    assert len(rec["content_hash"]) == 64
    coll = db.open("default")
    v = unit_vectors(np.random.default_rng(1), 1, DIM)[0]
    for bad in ({"text": "x"}, {"id": "a", "text": " "}, {"id": "a", "text": "x", "chunk": -1},
                {"id": "a", "text": "x", "metadata": "[1]"}, {"id": "a", "text": "x", "source": 3}):
        with pytest.raises(errors.RecordError) as direct:
            validate_record(bad, 1)
        with pytest.raises(errors.RecordError) as via_upsert:
            coll.upsert([{"id": "ok", "text": "fine", "embedding": v}, dict(bad, embedding=v)])
        assert str(direct.value) == str(via_upsert.value)
        assert str(direct.value).startswith("record 1")
    with pytest.raises(errors.RecordError, match=r"^notes.jsonl:3 \(id 'a'\): 'text'"):
        validate_record({"id": "a", "text": ""}, label="notes.jsonl:3")


def test_index_kinds_are_one_list():
    from lodevec.bench.search import CONFIGS, DEFAULT_CONFIGS
    from lodevec.store.indexes import KIND_NAMES, VECTOR_KINDS, get_kind, kind_name

    assert KIND_NAMES == tuple(k.name for k in VECTOR_KINDS) == ("IVF_HNSW_SQ", "IVF_PQ")
    assert CONFIGS == ("resident", "exact", "flat", *KIND_NAMES)
    assert DEFAULT_CONFIGS == ("resident", "exact", "flat", IndexPolicy().kind)
    policy = IndexPolicy()
    for kind in VECTOR_KINDS:
        p = policy.params_for(100_000, 768, kind.name.lower())
        assert p["kind"] == kind.name and {"partitions", "nprobes", "ef", "refine_factor"} <= set(p)
        assert get_kind(kind.name) is kind

        class Listed:  # list_indices spells kinds in CamelCase
            index_type = kind.listed_as.upper()
        assert kind_name(Listed) == kind.name
    with pytest.raises(errors.InputError, match="unknown vector index kind 'HNSW'; use IVF_HNSW_SQ or IVF_PQ"):
        policy.params_for(1000, 8, "hnsw")
