"""``lodevec watch``: files created, modified, renamed, deleted, saved the way editors
save, and a burst of thousands, each reflected in search within a few seconds and
without duplicate rows; the database lives inside the watched tree.

Waits poll with a bounded deadline (the machine is shared: deadlines are generous,
polls are short).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import MINILM_FILE, child_env, stop_process
from lodevec.embedding import Embedder
from lodevec.session import Session, collection_for
from lodevec.store import Database

pytest.importorskip("watchfiles")
from lodevec.ingest.watch import Watcher, is_transient  # noqa: E402

DEADLINE = 60.0


@pytest.fixture(scope="module")
def minilm():
    return Embedder.from_gguf(MINILM_FILE)


def wait_for(pred, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "rust.md").write_text("Rust is a systems programming language.\n")
    (root / "notes" / "bread.txt").write_text("Knead the dough and let it rise overnight.\n")
    (root / ".gitignore").write_text("secret/\n")
    return root


def open_in(root: Path, minilm) -> Session:
    """A session on a database folder inside the watched tree (resident copy on: the
    watcher writes while this process searches)."""
    db = Database(root / ".lodevec-db")
    return Session(collection_for(db, "default", minilm, create=True), minilm)


@pytest.fixture
def watching(tree, minilm):
    """(session, handle): a watcher on ``tree`` that has done its initial index."""
    session = open_in(tree, minilm)
    handle = Watcher(session, [tree]).start()
    try:
        assert handle.wait_ready(DEADLINE)
        yield session, handle
    finally:
        handle.stop()
    assert not handle.alive


def rows_of(session, path: Path) -> list[dict]:
    coll = session.collection
    return coll.get(coll.ids_for_source(str(path.resolve())))


def top_source(session, text: str) -> str:
    hits = session.collection.search(session.embed_query(text), k=1)
    return hits[0].source if hits else ""


def assert_no_duplicates(session) -> None:
    coll = session.collection
    by_source = coll.hashes_by_source()
    assert coll.count() == sum(len(ids) for ids in by_source.values())
    for source, ids in by_source.items():
        assert sorted(ids) == [f"{source}#{i}" for i in range(len(ids))] or not os.path.isabs(source)


def test_transient_names():
    for name in (".notes.md.swp", "notes.md~", "4913", ".#notes.md", "#notes.md#",
                 "notes.md___jb_tmp___", "notes.md.tmp", ".goutputstream-ABC123"):
        assert is_transient(name), name
    for name in ("notes.md", "swap.py", "tmp.txt", "4913.txt", "README"):
        assert not is_transient(name), name


def test_watch_follows_edits(tree, watching):
    session, handle = watching
    coll = session.collection
    rust = tree / "notes" / "rust.md"
    assert {Path(s).name for s in coll.sources()} == {"rust.md", "bread.txt"}
    assert handle.info()["state"] == "watching"

    # create
    new = tree / "notes" / "garden.txt"
    new.write_text("Tomatoes need sun, water and well drained soil.\n")
    wait_for(lambda: len(rows_of(session, new)) == 1, "a new file")
    assert top_source(session, "growing tomatoes in the garden") == str(new)

    # modify
    new.write_text("Cucumbers climb a trellis and want plenty of water.\n")
    wait_for(lambda: rows_of(session, new)[0]["text"].startswith("Cucumbers"), "a modification")
    assert len(rows_of(session, new)) == 1

    # an editor's atomic save: a swap file, vim's probe file, a temp file renamed over
    swap = tree / "notes" / ".rust.md.swp"
    swap.write_bytes(b"b0VIM 9.0\x00\x00swap")
    (tree / "notes" / "4913").write_text("")
    (tree / "notes" / "4913").unlink()
    tmp = tree / "notes" / "rust.md.tmp"
    tmp.write_text("Rust has ownership, borrowing and lifetimes.\n")
    os.replace(tmp, rust)
    wait_for(lambda: rows_of(session, rust)[0]["text"].startswith("Rust has ownership"),
             "an atomic save")
    swap.unlink()

    # rename
    renamed = tree / "notes" / "vegetables.txt"
    os.rename(new, renamed)
    wait_for(lambda: not rows_of(session, new) and len(rows_of(session, renamed)) == 1,
             "a rename")

    # delete
    renamed.unlink()
    wait_for(lambda: str(renamed) not in coll.sources(), "a deletion")

    # a folder moved within the tree, an ignored folder, then a barrier file
    os.rename(tree / "notes", tree / "docs")
    (tree / "secret").mkdir()
    (tree / "secret" / "keys.txt").write_text("never index this")
    barrier = tree / "barrier.txt"
    barrier.write_text("The last change of this test.\n")
    wait_for(lambda: str(barrier) in coll.sources()
             and {Path(s).parent.name for s in coll.sources()} == {"docs", "tree"},
             "a moved folder")
    names = sorted(Path(s).name for s in coll.sources())
    assert names == ["barrier.txt", "bread.txt", "rust.md"]
    assert_no_duplicates(session)

    # the database is inside the tree: its own writes cause no further updates
    assert not any(".lodevec-db" in s for s in coll.sources())
    # (a batch still in flight under load may land first: wait for the count to settle; a
    # feedback loop never settles and fails here)
    deadline = time.monotonic() + 30
    settled = handle.watcher.updates
    while True:
        time.sleep(1.5)
        if handle.watcher.updates == settled:
            break
        assert time.monotonic() < deadline, "the watcher keeps updating: a feedback loop"
        settled = handle.watcher.updates
    time.sleep(2.5)
    assert handle.watcher.updates == settled
    assert handle.info()["last_error"] is None


def test_watch_burst_of_files(tree, watching):
    """A git-checkout-sized burst: 2,000 new files, then the folder removed."""
    session, handle = watching
    coll = session.collection
    base, before = coll.count(), handle.watcher.updates
    burst = tree / "burst"
    for d in range(20):
        sub = burst / f"d{d:02}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i:03}.txt").write_text(f"note {d} {i}\n")
    wait_for(lambda: coll.count() == base + 2000, "2,000 new files", timeout=240)
    assert_no_duplicates(session)
    assert len(coll.sources()) == 2 + 2000
    assert handle.watcher.updates - before <= 20  # coalesced batches, not one per event
    hit = coll.search(session.embed_query("note 7 42"), k=5, mode="hybrid",
                      query_text="note 7 42")
    assert str(burst / "d07" / "f042.txt") in {h.source for h in hit}

    shutil.rmtree(burst)
    wait_for(lambda: coll.count() == base, "the burst folder removed", timeout=120)
    assert_no_duplicates(session)


def test_refresh_of_touched_paths(tree, minilm):
    """``refresh`` without the file watcher: the rules of ``index`` for touched paths."""
    session = open_in(tree, minilm)
    w = Watcher(session, [tree])
    w.index_all()
    coll = session.collection
    (tree / "secret").mkdir()
    (tree / "secret" / "a.txt").write_text("ignored by .gitignore")
    (tree / "empty.txt").write_text("")
    (tree / "new.txt").write_text("A new note about sailing boats.\n")
    s = w.refresh([tree / "secret" / "a.txt", tree / "empty.txt", tree / "new.txt",
                   tree / "gone.txt", tree / ".lodevec-db" / "x.lance"])
    assert s.chunks_embedded == 1 and [k["path"] for k in s.skipped] == [str(tree / "empty.txt")]
    assert {Path(p).name for p in coll.sources()} == {"rust.md", "bread.txt", "new.txt"}
    assert w.refresh([tree / "secret" / "a.txt"]) is None  # only ignored files: no update
    # an ignore file that changes re-walks its folder: now-ignored files leave the index
    (tree / ".gitignore").write_text("secret/\nnotes/\n")
    s = w.refresh([tree / ".gitignore"])
    assert s.chunks_removed == 2 and {Path(p).name for p in coll.sources()} == {"new.txt"}
    assert w.refresh([]) is None


def test_watch_command(tree, tmp_path):
    """``lodevec watch`` as a process: indexes, follows a new file, stops on Ctrl-C."""
    db = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-m", "lodevec", "watch", "--db", str(db),
                             "--model", str(MINILM_FILE), str(tree)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()

    def next_line() -> str:
        try:
            return lines.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError("lodevec watch printed nothing") from None

    try:
        assert next_line().startswith("watching ")
        assert "indexed 2 files" in next_line()
        (tree / "late.txt").write_text("Written after the watcher started.\n")
        line = next_line()
        assert "1 files, 1 chunks embedded" in line, line
        coll = Database(db, resident=False).open()
        assert str(tree / "late.txt") in coll.sources()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130), err


def test_serve_watch(tree, tmp_path):
    """``lodevec serve --watch``: the server's searches see what its watcher thread wrote."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lodevec", "serve", "--db", str(tmp_path / "db"),
                             "--model", str(MINILM_FILE), "--addr", f"127.0.0.1:{port}",
                             "--log-level", "warning", "--watch", str(tree)],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"

    def found(query: str, name: str) -> bool:
        assert proc.poll() is None, proc.stderr.read()
        try:
            r = httpx.post(f"{url}/search", json={"query": query, "k": 3}, timeout=10)
        except httpx.TransportError:
            return False
        return r.status_code == 200 and name in r.text

    try:
        wait_for(lambda: found("a systems programming language", "rust.md"), "the initial index")
        (tree / "notes" / "boats.txt").write_text("Sailing boats lean into the wind.\n")
        wait_for(lambda: found("sailing in the wind", "boats.txt"), "a file written while serving")
    finally:
        stop_process(proc)
