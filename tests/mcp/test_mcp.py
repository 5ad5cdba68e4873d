"""``lodevec mcp`` through the SDK's own client, over stdio and streamable HTTP.

The server is a subprocess (``python -m lodevec mcp``) on a database holding the golden
seed's three documents as files; the reference ranks doc3 (Rust) first for "programming
languages".
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from conftest import MINILM, MINILM_FILE, child_env, load_golden, stop_process
from conftest import run_cli as run

pytest.importorskip("mcp")
import anyio  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TOOLS = {"search", "index", "status", "list_sources", "get"}
GOLDEN = load_golden(MINILM / "golden-seed.json")
SEED = GOLDEN["seed"]
QUERY = SEED["query"]


def _server_args(db: Path, *extra: str) -> list[str]:
    return ["-m", "lodevec", "mcp", "--db", str(db), "--model", str(MINILM_FILE), *extra]


@pytest.fixture
def corpus(tmp_path):
    """The seed's documents as doc1.txt..doc3.txt, indexed into ``db``."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in SEED["documents"]:
        (docs / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    db = tmp_path / "db"
    code, _ = run(["index", "--db", str(db), "--model", str(MINILM_FILE), str(docs)])
    assert code == 0
    return docs, db


@asynccontextmanager
async def stdio_session(db: Path, cwd: Path, *extra: str):
    params = StdioServerParameters(command=sys.executable, args=_server_args(db, *extra),
                                   env=child_env(), cwd=str(cwd))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def http_session(db: Path, cwd: Path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, *_server_args(db, "--http", f"127.0.0.1:{port}")],
                            env=child_env(), cwd=str(cwd), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the server exited: {proc.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start listening"
                await anyio.sleep(0.2)
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session
    finally:
        stop_process(proc)


async def call(session, name: str, **arguments) -> dict:
    res = await session.call_tool(name, arguments)
    assert not res.is_error, res.content[0].text
    data = res.structured_content
    assert data == json.loads(res.content[0].text)
    return data


async def call_error(session, name: str, **arguments) -> str:
    res = await session.call_tool(name, arguments)
    assert res.is_error
    text = res.content[0].text
    assert "Traceback" not in text
    return text


async def scenario(session, docs: Path) -> None:
    """Tools listed; search finds doc3; index picks up a new file; status reports a
    file modified on disk; get and list_sources; errors are tool errors."""
    listed = await session.list_tools()
    assert {t.name for t in listed.tools} == TOOLS
    assert all(len(t.description) > 80 for t in listed.tools)

    found = await call(session, "search", query=QUERY, k=3)
    assert [Path(r["path"]).stem for r in found["results"]] == GOLDEN["seed_ranking"]
    top = found["results"][0]
    assert Path(top["path"]).name == "doc3.txt" and top["chunk"] == 0
    assert top["snippet"].startswith("Rust programming language")
    assert (await call(session, "search", query=QUERY, k=3, path="*.md"))["results"] == []
    only = await call(session, "search", query=QUERY, k=3, path="docs/doc1.txt", mode="hybrid")
    assert [Path(r["path"]).name for r in only["results"]] == ["doc1.txt"]

    (docs / "doc4.txt").write_text("Baking sourdough bread needs flour, water and time.\n")
    summary = await call(session, "index", paths=["docs"])  # relative to the server's cwd
    assert summary["files"] == 4 and summary["files_unchanged"] == 3
    assert summary["chunks_embedded"] == 1 and summary["rows"] == 4
    bread = await call(session, "search", query="how to bake bread", k=1)
    assert Path(bread["results"][0]["path"]).name == "doc4.txt"

    status = await call(session, "status")
    assert status["rows"] == 4 and status["sources"] == 4
    assert status["model"]["name"] == MINILM_FILE.name and status["model"]["dim"] == 384
    assert status["staleness"]["stale"] == [] and status["staleness"]["complete"]
    (docs / "doc2.txt").write_text("Machine learning is fascinating, and so is statistics.\n")
    (docs / "doc1.txt").unlink()
    stale = (await call(session, "status"))["staleness"]
    assert {(Path(s["path"]).name, s["reason"]) for s in stale["stale"]} == {
        ("doc2.txt", "modified"), ("doc1.txt", "deleted")}

    listing = await call(session, "list_sources", path="docs")
    assert listing["total"] == 4 and all(s["chunks"] == 1 for s in listing["sources"])
    assert (await call(session, "list_sources", path="*3.txt"))["total"] == 1
    chunk = await call(session, "get", id=top["id"])
    assert chunk["chunks"][0]["text"] == SEED["documents"][2][1]
    whole = await call(session, "get", path=str(docs / "doc3.txt"))
    assert whole["total_chunks"] == 1 and whole["chunks"][0]["id"] == top["id"]

    bad = await call_error(session, "search", query=QUERY, where="nonsense ((")
    assert "bad query or filter" in bad and "\n" not in bad
    assert "not indexed" in await call_error(session, "get", path="nowhere.txt")
    assert "no such file" in await call_error(session, "index", paths=["missing-folder"])


@pytest.mark.parametrize("transport", [stdio_session, http_session], ids=["stdio", "http"])
def test_mcp_tools(corpus, transport):
    docs, db = corpus

    async def main():
        async with transport(db, docs.parent) as session:
            await scenario(session, docs)

    anyio.run(main)


def test_mcp_watch(tmp_path):
    """``lodevec mcp --watch``: a new database indexed by the server's watcher thread,
    and a file written meanwhile found by ``search`` within a few seconds."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in SEED["documents"]:
        (docs / f"{name}.txt").write_text(text + "\n", encoding="utf-8")

    async def until(session, query: str, name: str) -> dict:
        deadline = time.monotonic() + 60
        while True:
            found = await call(session, "search", query=query, k=1)
            if found["results"] and Path(found["results"][0]["path"]).name == name:
                return found
            assert time.monotonic() < deadline, f"{name} not found"
            await anyio.sleep(0.2)

    async def main():
        async with stdio_session(tmp_path / "db", tmp_path, "--watch", "docs") as session:
            await until(session, QUERY, "doc3.txt")
            (docs / "boats.txt").write_text("Sailing boats lean into the wind.\n")
            await until(session, "sailing in the wind", "boats.txt")
            status = await call(session, "status")
            assert status["rows"] == 4
            assert status["watch"]["state"] in ("watching", "indexing")
            assert status["watch"]["paths"] == [str(docs.resolve())]

    anyio.run(main)
