"""A project database (``.lodevec``) stores its project's files relative to the project:
indexing, re-indexing after a move, pruning, freshness, the watcher and the MCP tools
all speak both spellings, and an older database's absolute rows are replaced, not
doubled."""

from __future__ import annotations

import shutil

import pytest

from conftest import MINILM_FILE
from lodevec.ingest import Indexer
from lodevec.ingest.freshness import check_freshness
from lodevec.ingest.sources import SourceMap
from lodevec.ingest.watch import Watcher
from lodevec.store import Database


@pytest.fixture(scope="module")
def minilm():
    from lodevec.embedding import Embedder

    return Embedder.from_gguf(MINILM_FILE)


def _project(root):
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "bread.md").write_text("Knead the dough and bake the bread.\n")
    (root / "garden.md").write_text("Tomatoes need sun and water.\n")
    return root


def _open(root, minilm):
    return Database(root / ".lodevec", resident=False).create_or_open(identity=minilm.identity())


def test_relative_sources_survive_a_move(tmp_path, minilm):
    root = _project(tmp_path / "p")
    coll = _open(root, minilm)
    Indexer(coll, minilm).index_paths([root])
    assert coll.sources() == {"docs/bread.md", "garden.md"}
    assert check_freshness(coll).stale == []
    (root / "garden.md").write_text("Potatoes like cool weather.\n")
    assert check_freshness(coll).stale == [{"path": str(root / "garden.md"), "reason": "modified"}]

    moved = tmp_path / "q"
    shutil.move(root, moved)
    coll = _open(moved, minilm)
    s = Indexer(coll, minilm).index_paths([moved])
    assert (s.chunks_embedded, s.chunks_removed) == (1, 0) and coll.count() == 2
    (moved / "docs" / "bread.md").unlink()
    w = Watcher.__new__(Watcher)
    assert w._gone(coll.sources(), {moved / "docs"}, set(), SourceMap.for_collection(coll)) == \
        ["docs/bread.md"]


def test_absolute_rows_of_an_older_index_are_replaced(tmp_path, minilm):
    root = _project(tmp_path / "p")
    coll = _open(root, minilm)
    old = Indexer(coll, minilm)
    old.sources = SourceMap(None)  # as lodevec wrote it before: absolute sources
    old.index_paths([root])
    assert coll.sources() == {str(root.resolve() / "docs" / "bread.md"), str(root.resolve() / "garden.md")}
    s = Indexer(coll, minilm).index_paths([root], prune=False)
    assert coll.sources() == {"docs/bread.md", "garden.md"} and s.chunks_removed == 2


def test_mcp_tools_give_absolute_paths(tmp_path, minilm):
    from lodevec.mcp.tools import SearchTools
    from lodevec.session import Session

    root = _project(tmp_path / "p")
    coll = _open(root, minilm)
    Indexer(coll, minilm).index_paths([root])
    tools = SearchTools(Session(coll, minilm), cwd=root)
    hits = tools.search("bake bread", k=2, path="docs")["results"]
    assert [h["path"] for h in hits] == [str(root.resolve() / "docs" / "bread.md")]
    assert hits[0]["line_start"] == 1
    assert tools.search("bread", k=2, path="*.md")["results"]
    got = tools.get(path="garden.md")["chunks"]
    assert got[0]["path"] == str(root.resolve() / "garden.md")
    listed = tools.list_sources(path="docs")["sources"]
    assert listed == [{"path": str(root.resolve() / "docs" / "bread.md"), "chunks": 1}]
