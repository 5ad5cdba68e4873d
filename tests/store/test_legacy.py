"""A database written by lodevec 0.1.0 (tests/fixtures/legacy-0.1.0, see its README)
opens, searches to the same results, reports the same stats and takes writes."""

from __future__ import annotations

import functools
import json
import shutil

import pytest

from conftest import FIXTURES, MINILM_FILE, run_cli
from lodevec.store import Database

LEGACY = FIXTURES / "legacy-0.1.0"
QUERY = "programming languages"


def _expected() -> list[dict]:
    lines = (LEGACY / "expected-search.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _same(got: list[dict], expected: list[dict]) -> None:
    assert [(r["id"], r["text"], r["source"], r["chunk"], r["metadata"]) for r in got] == \
        [(r["id"], r["text"], r["source"], r["chunk"], r["metadata"]) for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["score"] == pytest.approx(e["score"], abs=1e-5)


@pytest.fixture
def copy(tmp_path):
    """A copy of the legacy database (the fixture itself is never written)."""
    return shutil.copytree(LEGACY / "db", tmp_path / "db")


@pytest.fixture
def embedder():
    return _minilm()


@functools.cache
def _minilm():
    from lodevec.embedding import Embedder

    return Embedder.from_gguf(MINILM_FILE)


def test_legacy_table_searches_as_before(copy, embedder):
    q = embedder.embed(QUERY, task="search_query")
    coll = Database(copy, resident=False).open(identity=embedder.identity())
    _same([r.to_dict() for r in coll.search(q, k=10)], _expected())
    # the resident copy of the old table answers the same
    resident = Database(copy).open(identity=embedder.identity())
    assert resident.load_resident()["rows"] == 5
    _same([r.to_dict() for r in resident.search(q, k=10)], _expected())


def test_legacy_stats(copy):
    expected = json.loads((LEGACY / "stats.json").read_text(encoding="utf-8"))
    stats = Database(copy, resident=False).open().stats()
    for key in ("collection", "rows", "sources", "dim", "model", "identity", "index",
                "fts_index", "id_index", "version", "versions", "fragments", "resident"):
        assert stats[key] == expected[key], key


def test_legacy_table_takes_writes(copy, embedder):
    coll = Database(copy).create_or_open(identity=embedder.identity())
    text = "Python is a programming language"
    out = coll.upsert([{"id": "py", "text": text, "source": "new.txt",
                        "embedding": embedder.embed(text, task="search_document")}])
    assert out["inserted"] == 1 and coll.count() == 6
    hits = coll.search(embedder.embed(QUERY, task="search_query"), k=10)
    assert len(hits) == 6 and hits[0].id == "py"
    old = [h.to_dict() for h in hits if h.id != "py"]
    _same(old, _expected())  # the old rows score as before
    assert coll.get(["r2"])[0]["metadata"] == {"lang": "en", "n": 2}


def test_legacy_search_through_the_cli(copy):
    code, out = run_cli(["search", "--db", str(copy), "--model", str(MINILM_FILE), QUERY, "--json"])
    assert code == 0
    _same([json.loads(line) for line in out.splitlines()], _expected())
