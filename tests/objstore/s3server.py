"""A real S3 server on loopback for the object-storage tests: ``moto_server`` (from
``moto[server]``) on 127.0.0.1 with a free port, started once per test session and
stopped at its end.  Each test gets its own bucket and ``s3://`` database URI, and the
standard AWS variables point LanceDB, boto3 and child processes at the server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import stop_process

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install 'lodevec[test]')")
boto3 = pytest.importorskip("boto3", reason="the S3 tests need boto3 (pip install 'lodevec[test]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """``{"endpoint", "env"}`` of a moto S3 server on loopback (stopped after the session)."""
    port = _free_port()
    # moto_server, its conditional writes made atomic as S3's are (see moto_atomic.py)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("moto_atomic.py")),
                             "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                pytest.fail(f"moto_server did not start on {endpoint}")
            time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
           # no instance-metadata lookups (nothing outside the machine is contacted)
           "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        yield {"endpoint": endpoint, "env": env, "proc": proc}
    finally:
        stop_process(proc)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The AWS variables pointing at the loopback server, set for this test."""
    for k, v in s3_server["env"].items():
        monkeypatch.setenv(k, v)
    # short leases: a killed writer's lease expires within a test's patience
    monkeypatch.setenv("LODEVEC_LEASE_TTL", "8")
    return s3_server["env"]


@pytest.fixture
def s3_client(s3_env, s3_server):
    return boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(s3_client):
    """A fresh bucket on the loopback server."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_db(bucket):
    """A fresh ``s3://`` database URI (a prefix in a fresh bucket)."""
    return f"s3://{bucket}/db"


def s3_child_env(extra: dict | None = None) -> dict:
    """``child_env()`` plus the AWS variables of the current test (``s3_env`` set them)."""
    from conftest import child_env

    env = child_env()
    env.update(extra or {})
    return env


__all__ = ["s3_server", "s3_env", "s3_client", "bucket", "s3_db", "s3_child_env"]
