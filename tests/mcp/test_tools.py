"""The MCP tools' logic in-process (no SDK): path filters quoted and escaped safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MINILM_FILE
from lodevec import errors
from lodevec.embedding import Embedder
from lodevec.mcp.tools import PathPattern, SearchTools, snippet
from lodevec.session import Session, collection_for
from lodevec.store import Database

NAMES = ["it's 50%_off.txt", "x_y.md", "xay.md", "sub/deep/notes.md", "sub/other.txt"]


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    docs = root / "docs"
    for i, name in enumerate(NAMES):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(f"Document {i} talks about topic number {i}.\n")
    emb = Embedder.from_gguf(MINILM_FILE)
    session = Session(collection_for(Database(root / "db"), "default", emb, create=True), emb)
    t = SearchTools(session, cwd=root)
    assert t.index(["docs"])["chunks_embedded"] == len(NAMES)
    return t, docs


@pytest.mark.parametrize("pattern,expected", [
    ("docs/it's 50%_off.txt", ["it's 50%_off.txt"]),
    ("*_y.md", ["x_y.md"]),
    ("*.md", ["x_y.md", "xay.md", "notes.md"]),
    ("docs/sub", ["notes.md", "other.txt"]),
    ("docs/sub/", ["notes.md", "other.txt"]),
    ("docs/**/*.md", ["x_y.md", "xay.md", "notes.md"]),
    ("docs/su", []),  # a prefix is a folder or a file, not a string prefix
    ("x?y.md", ["x_y.md", "xay.md"]),
    ("nothing'; DROP TABLE x; --", []),
])
def test_path_filters(tools, pattern, expected):
    t, docs = tools
    found = t.search("topic", k=10, path=pattern)["results"]
    assert sorted(Path(r["path"]).name for r in found) == sorted(expected)
    listed = t.list_sources(path=pattern)["sources"]
    assert sorted(Path(s["path"]).name for s in listed) == sorted(expected)
    assert all(PathPattern(pattern, docs.parent).matches(r["path"]) for r in found)


def test_tool_errors(tools):
    t, _ = tools
    with pytest.raises(errors.InputError, match="query is empty"):
        t.search("  ")
    with pytest.raises(errors.InputError, match="k must be between"):
        t.search("topic", k=0)
    with pytest.raises(errors.InputError, match="unknown mode"):
        t.search("topic", mode="semantic")
    with pytest.raises(errors.InputError, match="either id"):
        t.get()
    with pytest.raises(errors.InputError, match="path filter is empty"):
        t.search("topic", path=" ")


def test_status_get_and_snippet(tools):
    t, docs = tools
    st = t.status()
    assert st["rows"] == len(NAMES) and st["staleness"]["stale_count"] == 0 and st["watch"] is None
    chunks = t.get(path="docs/x_y.md")["chunks"]
    assert [c["id"] for c in chunks] == [f"{docs / 'x_y.md'}#0"]
    assert snippet("a  b\n\nc " * 100, limit=20) == "a b c a b c a b c a…"
