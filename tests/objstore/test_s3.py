"""Object storage on a real S3 server on loopback (moto_server, see conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3jobs
from botocore.exceptions import ClientError
from s3server import boto3, bucket, s3_child_env, s3_client, s3_db, s3_env, s3_server  # noqa: F401 (fixtures)

from conftest import MINILM, MINILM_FILE, load_golden, run_cli, stop_process
from lodevec import errors
from lodevec.store import Database
from lodevec.store.lease import S3Lease


def test_server_rejects_a_second_conditional_put(s3_client, bucket):
    """Lance's commits and lodevec's lease rely on it: If-None-Match: * creates once."""
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3_client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"
    # and racing ones: exactly one of 16 concurrent creations of one key wins, as on S3
    # (moto_atomic.py makes sure of it)
    import threading

    wins, barrier = [], threading.Barrier(16)

    def create(i):
        barrier.wait()
        try:
            s3_client.put_object(Bucket=bucket, Key="race", Body=str(i).encode(), IfNoneMatch="*")
            wins.append(i)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed"
    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert s3_client.get_object(Bucket=bucket, Key="race")["Body"].read() == str(wins[0]).encode()


# ---------------------------------------------------------------- helpers
JOBS = Path(__file__).with_name("s3jobs.py")


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOBS), *args], env=s3_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_rows(uri: str) -> list[dict]:
    coll = Database(uri, resident=False).open("default", identity=s3jobs.IDENT)
    return coll.table.search().select(["id", "text"]).limit(None).to_arrow().to_pylist()


def check_rounds(rows: list[dict], writers: int, rounds: int, shared: int, own: int) -> None:
    """Every id of every round stored exactly once, with the text of one of its writers."""
    ids = [r["id"] for r in rows]
    dupes = {i for i in ids if ids.count(i) > 1} if len(ids) != len(set(ids)) else set()
    assert not dupes, f"{len(ids) - len(set(ids))} duplicate rows, e.g. {sorted(dupes)[:5]}"
    want = {i for w in range(writers) for r in range(rounds)
            for i in s3jobs.round_ids(w, r, shared, own)}
    assert set(ids) == want, f"lost {len(want - set(ids))} ids, e.g. {sorted(want - set(ids))[:5]}"
    for row in rows:
        assert row["text"].startswith(row["id"] + " by writer ")


# ---------------------------------------------------------------- the lease
def test_lease_excludes_and_hands_over(s3_env, s3_db):
    from lodevec.store.storage import resolve_options

    opts = resolve_options(s3_db, None)
    a, b = S3Lease(s3_db, "c", opts, ttl=3, wait=0.5), S3Lease(s3_db, "c", opts, ttl=3, wait=30)
    with a:
        assert a.held() and a.generation == 1
        # nobody takes it while a renews it (waiting longer than its ttl)
        with pytest.raises(errors.StoreError, match="is being written by .*gave up"):
            with S3Lease(s3_db, "c", opts, ttl=3, wait=4):
                pass
    with b:  # released: taken at once, the generation grows
        assert b.generation == 2 and b.takeovers == 0
    # a holder that stops renewing (a paused or dead writer) is taken over after ttl,
    # and refuses to write on (fencing)
    with a:
        a._stop.set()  # its heartbeat stops, as in a process that froze
        a._beat.join()
        t0 = time.monotonic()
        with b:
            assert b.generation == 4 and b.takeovers == 1
            assert time.monotonic() - t0 >= 3 * 0.9
            with pytest.raises(errors.StoreError, match="lost the write lease"):
                a.fence()
    a._lost = True  # (its release must not touch b's lease; a already knows it lost it)


# ---------------------------------------------------------------- writers
@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_never_duplicate(s3_env, s3_db, tmp_path, writers):
    """The issue's case: overlapping ids upserted by several processes at once, several
    rounds, both the merge-insert path (small batches) and the check-and-append path."""
    rounds, shared, own = (3, 200, 400) if writers == 2 else (2, 100, 150)
    Database(s3_db, resident=False).create_or_open("default", identity=s3jobs.IDENT)
    go = tmp_path / "go"
    # writer 0 writes big batches (check ids, append), the others small ones (merge-insert)
    procs = [spawn("writer", s3_db, str(w), str(rounds), str(shared), str(own),
                   str(10_000 if w == 0 else 150), str(go)) for w in range(writers)]
    time.sleep(1.0)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        assert len(out.splitlines()) == rounds
        outs.append(out)
    rows = stored_rows(s3_db)
    try:
        check_rounds(rows, writers, rounds, shared, own)
    except AssertionError as e:
        raise AssertionError(f"{e}; the writers said: {outs}") from None


def test_killed_writer_then_rerun(s3_env, s3_db):
    """kill -9 of a writer mid-write; a rerun waits out its lease and completes it."""
    rounds, shared, own = 4, 50, 150
    p = spawn("writer", s3_db, "0", str(rounds), str(shared), str(own), "50")
    assert p.stdout.readline()  # the first round is stored: now it is mid-write
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    partial = stored_rows(s3_db)
    assert 0 < len(partial) < rounds * (shared + own)
    t0 = time.monotonic()
    q = spawn("writer", s3_db, "0", str(rounds), str(shared), str(own), "50")
    out, err = q.communicate(timeout=240)
    assert q.returncode == 0, err[-2000:]
    check_rounds(stored_rows(s3_db), 1, rounds, shared, own)
    # the rerun found the dead writer's lease (an 8 s ttl in these tests) and took it over
    lease = json.loads(boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"]).get_object(
        Bucket=s3_db.split("/")[2], Key="db/.lodevec-locks/default.lease")["Body"].read())
    assert lease["released"] and lease["generation"] >= 3 and time.monotonic() - t0 >= 6


# ---------------------------------------------------------------- readers
def test_reader_with_resident_copy_sees_new_versions(s3_env, s3_db):
    coll = Database(s3_db, resident=False).create_or_open("default", identity=s3jobs.IDENT)
    coll.upsert(s3jobs.records(s3jobs.round_ids(0, 0, 0, 50), 0, 0))
    p = spawn("reader", s3_db, "late-row", "60")
    try:
        ready = json.loads(p.stdout.readline())
        assert ready["ready"]
        coll.upsert(s3jobs.records(["late-row"], 1, 1))
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            stop_process(p)
    assert p.returncode == 0, err[-2000:]
    seen = json.loads(out.splitlines()[-1])
    assert seen["hit"] == "late-row" and seen["loaded"]
    assert seen["version_after"] > seen["version_before"]


# ---------------------------------------------------------------- commands
def test_seed_case_and_every_command(s3_env, s3_db, monkeypatch):
    """all-MiniLM-L6-v2 ranks the Rust document first for "programming languages", on
    S3 as locally; stats, optimize and delete work against the bucket."""
    seed = load_golden(MINILM / "golden-seed.json")
    lines = "".join(json.dumps({"id": name, "text": text}) + "\n"
                    for name, text in seed["seed"]["documents"])
    code, _ = run_cli(["index", "--db", s3_db, "--model", str(MINILM_FILE), "--input", "-",
                       "--json"], lines, monkeypatch)
    assert code == 0
    code, out = run_cli(["search", "--db", s3_db, "--json", seed["seed"]["query"]])
    assert code == 0 and [json.loads(x)["id"] for x in out.splitlines()] == seed["seed_ranking"]
    code, out = run_cli(["search", "--db", s3_db, "--json", "--hybrid", seed["seed"]["query"]])
    assert json.loads(out.splitlines()[0])["id"] == "doc3"
    code, out = run_cli(["stats", "--db", s3_db, "--json"])
    st = json.loads(out)
    assert code == 0 and st["rows"] == 3 and st["uri"] == s3_db and st["size_bytes"] > 0
    code, out = run_cli(["optimize", "--db", s3_db, "--json"])
    assert code == 0 and json.loads(out)["fragments_after"] >= 1
    assert json.loads(out)["kept_versions_seconds"] == 300.0   # other machines may read them
    code, out = run_cli(["delete", "--db", s3_db, "doc1"])
    assert code == 0 and json.loads(out) == {"deleted": 1}
    code, out = run_cli(["stats", "--db", s3_db, "--json"])
    assert json.loads(out)["rows"] == 2


def test_storage_options_on_the_command_line(s3_env, s3_db, monkeypatch, capsys):
    """--storage-option gives what the environment does not; a malformed one is exit 2."""
    coll = Database(s3_db, resident=False).create_or_open("default", identity=s3jobs.IDENT)
    coll.upsert(s3jobs.records(["a", "b"], 0, 0))
    endpoint = s3_env["AWS_ENDPOINT_URL"]
    for k in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(k)
    code, out = run_cli(["stats", "--db", s3_db, "--json", "--storage-option",
                         f"aws_endpoint={endpoint}", "--storage-option", "allow_http=true"])
    assert code == 0 and json.loads(out)["rows"] == 2
    code, _ = run_cli(["stats", "--db", s3_db, "--storage-option", f"endpoint={endpoint}"])
    assert code == 2 and "plain HTTP: set AWS_ALLOW_HTTP=true" in capsys.readouterr().err
    code, _ = run_cli(["stats", "--db", s3_db, "--storage-option", "allow_http"])
    assert code == 2 and "--storage-option 'allow_http': expected KEY=VALUE" in capsys.readouterr().err
    # Database(storage_options=) wins over the environment (and reaches the lease too)
    db = Database(s3_db, resident=False, storage_options={"endpoint": endpoint, "allow_http": "true"})
    db.open("default").upsert(s3jobs.records(["c"], 0, 0))
    assert db.open("default").count() == 3


def test_server_on_s3(s3_env, s3_db):
    """``lodevec serve --db s3://...``: documents in, searched from the resident copy."""
    import httpx

    from conftest import NOMIC
    from lodevec.embedding import Embedder
    from lodevec.serve import BackgroundServer, create_app

    emb = Embedder.from_gguf(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    docs = [{"id": "cat", "text": "The cat sat on the mat."},
            {"id": "rust", "text": "Rust is a systems programming language."}]
    with BackgroundServer(create_app(emb, s3_db, collection="docs")) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/documents", json={"documents": docs})
        assert r.status_code == 200, r.text
        for _ in range(3):  # the second search on starts the resident load
            r = c.post("/search", json={"query": "Rust is a systems programming language.", "k": 1})
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["id"] == "rust"
    assert Database(s3_db, resident=False).open("docs").count() == 2
