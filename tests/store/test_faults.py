"""Bad luck kept as tests (issue 16): SIGKILL mid-write, concurrent writers with a reader,
a full disk, and the files a killed optimize leaves behind.

Every kill lands after at least one commit (the test polls the table), and every check
is the same: the table opens, no id twice, nothing acknowledged lost, a rerun completes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import NOMIC, child_env, run_together, unit_vectors
from conftest import run_cli as run
from lodevec import errors
from lodevec.store import Database

Q4 = str(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf")
DIM = 16
IDENT = {"architecture": "nomic-bert", "model": "synthetic.gguf", "digest": "f" * 64,
         "dim": DIM, "matryoshka_dim": None,
         "prompts": {"query": "search_query: ", "document": "search_document: "}}


# ------------------------------------------------------------------ helpers
def _spawn(args: list, log: Path) -> subprocess.Popen:
    env = dict(child_env(), LODEVEC_NUM_THREADS="1")
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "lodevec", *map(str, args)], env=env,
                                stdout=f, stderr=subprocess.STDOUT)


def _count(db: Path) -> int:
    try:
        return Database(db, resident=False).open().count()
    except errors.LodevecError:  # not created yet
        return 0


def _kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 60) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill: {log.read_text()}"
        assert time.monotonic() < deadline, "no commit to kill after"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _rows(db: Path) -> list[tuple[str, str]]:
    """(id, content_hash) of every row; the table must open and hold each id once."""
    coll = Database(db, resident=False).open()
    rows = coll.table.search().select(["id", "content_hash"]).limit(None).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert coll.count() == len(ids)
    return sorted((r["id"], r["content_hash"]) for r in rows)


def _folder(path: Path, n: int) -> Path:
    path.mkdir()
    for i in range(n):
        (path / f"note{i:04d}.txt").write_text(
            f"note {i} about topic {i % 7}: some words to embed, {i * 31 % 97} of them\n")
    return path


def _synthetic(n: int, start: int = 0, seed: int = 0) -> list[dict]:
    vecs = unit_vectors(np.random.default_rng(seed), n, DIM)
    return [{"id": f"d{i}", "text": f"row {i}", "source": f"s{i % 9}", "embedding": vecs[k]}
            for k, i in enumerate(range(start, start + n))]


# ------------------------------------------------------------------ SIGKILL mid-write
def test_killed_folder_index_reruns_to_a_clean_index(tmp_path):
    docs = _folder(tmp_path / "docs", 300)
    db = tmp_path / "db"
    log = tmp_path / "log"
    proc = _spawn(["index", "--db", db, "--model", Q4, "--batch-size", "4", docs], log)
    _kill_when(proc, lambda: _count(db) > 0, log)
    assert 0 < _count(db) < 300
    assert run(["index", "--db", str(db), "--model", Q4, str(docs)])[0] == 0
    assert run(["index", "--db", str(tmp_path / "clean"), "--model", Q4, str(docs)])[0] == 0
    got = _rows(db)
    assert len(got) == 300 and got == _rows(tmp_path / "clean")


def test_killed_input_index_reruns_to_every_record_once(tmp_path):
    n = 2000
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": f"record {i} of the batch"}) + "\n"
                            for i in range(n)), encoding="utf-8")
    db = tmp_path / "db"
    log = tmp_path / "log"
    proc = _spawn(["index", "--db", db, "--model", Q4, "--batch-size", "64", "--input", path], log)
    _kill_when(proc, lambda: _count(db) > 0, log)
    assert 0 < _count(db) < n
    assert run(["index", "--db", str(db), "--model", Q4, "--input", str(path)])[0] == 0
    assert [i for i, _ in _rows(db)] == sorted(f"r{i}" for i in range(n))


def _data_files(db: Path) -> set[str]:
    return set(os.listdir(db / "default.lance" / "data"))


def test_killed_optimize_leaves_a_table_that_opens_counts_searches_and_reoptimizes(tmp_path):
    db = tmp_path / "db"
    coll = Database(db, auto_index=False).create_or_open("default", identity=IDENT)
    for k in range(80):  # one fragment per upsert
        coll.upsert(_synthetic(40, start=40 * k, seed=k))
    before = _data_files(db)
    assert len(before) >= 80
    log = tmp_path / "log"
    proc = _spawn(["optimize", "--db", db], log)
    # the kill lands once compaction has written its first new file, before its commit
    _kill_when(proc, lambda: bool(_data_files(db) - before), log)
    assert len(_rows(db)) == 3200
    coll = Database(db, resident=False).open()
    q = coll.get(["d1234"], with_embedding=True)[0]["embedding"]
    assert coll.search(q, k=3)[0].id == "d1234"
    left = _data_files(db) - before
    res = coll.optimize(cleanup_older_than=0)
    assert res["fragments_after"] < 80
    assert len(_rows(db)) == 3200
    # what the killed run wrote is gone with every old version: one file per fragment left
    assert left and not left & _data_files(db)
    assert len(_data_files(db)) == res["fragments_after"]


def test_stray_files_of_a_killed_write_are_removed_by_optimize(tmp_path):
    db = tmp_path / "db"
    coll = Database(db, auto_index=False).create_or_open("default", identity=IDENT)
    for k in range(3):
        coll.upsert(_synthetic(50, start=50 * k, seed=k))
    data = db / "default.lance" / "data"
    old = time.time() - 3600
    stray = data / "00000000-dead-beef-0000-000000000000.lance"
    stray.write_bytes(os.urandom(200_000))  # what a killed optimize leaves
    staged = data / ".tmpAbC123"  # a file the killed write was still staging
    staged.write_bytes(os.urandom(100_000))
    for p in (stray, staged):
        os.utime(p, (old, old))
    coll.optimize(delete_unverified=False)  # what LanceDB does by default: kept 7 days
    assert stray.exists() and staged.exists()
    res = coll.optimize()
    assert not stray.exists() and not staged.exists()
    assert res["bytes_after"] < res["bytes_before"]
    assert len(_rows(db)) == 150
    assert coll.search(coll.get(["d7"], with_embedding=True)[0]["embedding"], k=1)[0].id == "d7"


def test_killed_server_loses_no_acknowledged_document(tmp_path):
    import httpx

    db = tmp_path / "db"
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"id": "seed", "text": "first"}) + "\n", encoding="utf-8")
    assert run(["index", "--db", str(db), "--model", Q4, "--input", str(seed)])[0] == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "log"
    proc = _spawn(["serve", "--db", db, "--addr", f"127.0.0.1:{port}", "--log-level", "warning"], log)
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

        def post() -> None:
            with httpx.Client(base_url=url, timeout=10) as c:
                for b in range(10_000):
                    docs = [{"id": f"b{b}-{i}", "text": f"doc {i} of batch {b}"} for i in range(8)]
                    try:
                        r = c.post("/documents", json={"documents": docs})
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 200:
                        acked.extend(d["id"] for d in docs)
                    # the write is repeated once below, so updates are killed too
                    try:
                        c.post("/documents", json={"documents": docs[:2]})
                    except httpx.HTTPError:
                        return

        poster = threading.Thread(target=post)
        poster.start()
        _kill_when(proc, lambda: len(acked) >= 80, log)
        poster.join(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = {i for i, _ in _rows(db)}
    assert set(acked) <= ids and "seed" in ids


# ------------------------------------------------------------------ concurrent writers
ROUNDS = 4


def _writer(db: str, w: int, barrier) -> None:
    coll = Database(db, resident=False).open()
    barrier.wait()
    for r in range(ROUNDS):
        shared = [dict(x, id=f"s{r}-{x['id']}", text=f"shared by {w}") for x in _synthetic(30, seed=r)]
        own = [dict(x, id=f"w{w}-{r}-{x['id']}") for x in _synthetic(20, seed=10 * w + r)]
        coll.upsert(shared + own)


def _reader(db: str, expected: int, barrier) -> None:
    """Counts only grow, no id twice in a scan or a search, until every row is there."""
    coll = Database(db, resident=False).open()
    barrier.wait()
    last, reads, deadline = 0, 0, time.monotonic() + 90
    q = unit_vectors(np.random.default_rng(99), 1, DIM)[0]
    while last < expected:
        n = coll.count()
        ids = coll.table.search().select(["id"]).limit(None).to_arrow()["id"].to_pylist()
        hits = [h.id for h in coll.search(q, k=20)]
        assert len(ids) == len(set(ids)) and len(hits) == len(set(hits)), "duplicate ids"
        assert n >= last and len(ids) >= n, (n, last, len(ids))
        last, reads = n, reads + 1
        assert time.monotonic() < deadline, f"{last} rows of {expected} after {reads} reads"
    assert n == expected


def _worker(db: str, role: int, barrier) -> None:
    """A writer (role 0, 1, 2) or the reader (role -1)."""
    if role < 0:
        _reader(db, ROUNDS * 30 + 3 * ROUNDS * 20, barrier)
    else:
        _writer(db, role, barrier)


def test_three_writers_and_a_reader(tmp_path):
    db = tmp_path / "db"
    coll = Database(db).create_or_open("default", identity=IDENT)
    run_together(_worker, [(str(db), role) for role in (0, 1, 2, -1)], timeout=120)
    assert len(_rows(db)) == ROUNDS * 30 + 3 * ROUNDS * 20 == coll.count()


# ------------------------------------------------------------------ full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only); unmounted whatever happens."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_stops_index_cleanly_and_a_rerun_completes(tmp_path, small_disk):
    docs = _folder(tmp_path / "docs", 200)
    filler = small_disk / "filler"
    st = os.statvfs(small_disk)
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 256 * 1024))
    db = small_disk / "db"
    p = subprocess.run([sys.executable, "-m", "lodevec", "index", "--db", str(db), "--model", Q4,
                        "--batch-size", "8", str(docs)], capture_output=True, text=True,
                       env=dict(child_env(), LODEVEC_NUM_THREADS="1"), timeout=120)
    assert p.returncode in (1, 2), p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "No space left" in lines[0]
    filler.unlink()
    assert run(["index", "--db", str(db), "--model", Q4, str(docs)])[0] == 0
    assert len(_rows(db)) == 200
