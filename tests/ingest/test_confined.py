"""Indexing stays inside the tree: links out are not followed (and never into /proc),
FIFOs never opened, undecodable names skipped with a note, removed links pruned."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import pytest

from conftest import MINILM_FILE
from lodevec.embedding import Embedder
from lodevec.ingest import Indexer, read_text, walk_files
from lodevec.store import Database


@pytest.fixture(scope="module")
def minilm():
    return Embedder.from_gguf(MINILM_FILE)


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block blocks, e.g. opening a FIFO."""
    def fire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("Rust is a systems programming language.\n")
    (root / "sub" / "b.md").write_text("Tomatoes need sun and water.\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the password is hunter2\n")
    return root, outside


def index(tmp_path, minilm, root, **kw):
    coll = Database(tmp_path / "db").create_or_open(identity=minilm.identity())
    summary = Indexer(coll, minilm).index_paths([root], **kw)
    return coll, summary


def sources(coll) -> set[str]:
    return set(coll.hashes_by_source())


def test_symlink_out_of_the_tree_is_not_followed(tmp_path, minilm, tree):
    root, outside = tree
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "proc.txt").symlink_to(f"/proc/{os.getpid()}/status")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    coll, s = index(tmp_path, minilm, root)
    assert sources(coll) == {str(root.resolve() / "a.md"), str(root.resolve() / "sub" / "b.md")}
    reasons = {os.path.basename(r["path"]): r["reason"] for r in s.skipped}
    assert reasons["leak.txt"].startswith("symbolic link to outside the folder")
    assert reasons["proc.txt"].startswith("symbolic link into /proc")
    assert all("hunter2" not in r.text for r in coll.search(minilm.embed("password"), k=10))


def test_follow_symlinks_records_the_link_path_and_never_reads_proc(tmp_path, minilm, tree):
    root, outside = tree
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "proc.txt").symlink_to(f"/proc/{os.getpid()}/status")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a cycle
    (root / "sys").symlink_to("/sys/kernel", target_is_directory=True)
    coll, s = index(tmp_path, minilm, root, follow_symlinks=True)
    base = root.resolve()
    got = sources(coll)
    assert str(base / "leak.txt") in got and str(base / "outdir" / "secret.txt") in got
    assert not any("/proc" in x or "/sys" in x or x.startswith(str(outside)) for x in got)
    assert len(got) == 4, got  # a.md, b.md, leak.txt, outdir/secret.txt; the cycle entered once


def test_removed_link_rows_are_pruned(tmp_path, minilm, tree):
    root, outside = tree
    (root / "inside.md").symlink_to(root / "a.md")         # inside the tree: followed
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    coll, _ = index(tmp_path, minilm, root, follow_symlinks=True)
    assert {str(root.resolve() / "inside.md"), str(root.resolve() / "leak.txt")} <= sources(coll)
    (root / "inside.md").unlink()
    (root / "leak.txt").unlink()
    s = Indexer(coll, minilm).index_paths([root])
    assert s.chunks_removed == 2
    assert sources(coll) == {str(root.resolve() / "a.md"), str(root.resolve() / "sub" / "b.md")}


def test_fifo_is_skipped_without_blocking(tmp_path, minilm, tree):
    root, _ = tree
    os.mkfifo(root / "pipe.txt")
    with deadline(10):
        coll, s = index(tmp_path, minilm, root)
        assert read_text(root / "pipe.txt") == (None, "not a regular file")
        assert [p.name for p in walk_files([root / "pipe.txt"])] == []
    assert coll.count() == 2
    assert {"path": str(root.resolve() / "pipe.txt"), "reason": "not a regular file (fifo)"} in s.skipped


def test_undecodable_name_is_skipped_with_a_note(tmp_path, minilm, tree):
    """It aborted the whole folder ('utf-8' codec can't encode character '\\udcff')."""
    root, _ = tree
    bad = os.path.join(os.fsencode(root), b"bad\xff.txt")
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"some text in a file with a bad name\n")
    os.close(fd)
    os.mkdir(os.path.join(os.fsencode(root), b"dir\xfe"))
    coll, s = index(tmp_path, minilm, root)
    assert coll.count() == 2 and s.chunks_embedded == 2
    notes = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in s.skipped}
    assert notes["bad\\xff.txt"] == "name is not valid UTF-8"
    assert notes["dir\\xfe"].startswith("name is not valid UTF-8")
