"""Slow and idle clients cannot starve the server (issue 16, item 1).

A real ``lodevec serve`` in a subprocess (1024 file limit), loopback only; every
socket the test opens is closed at the end.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import FIXTURES  # noqa: E402
from sandbox import child_env  # noqa: E402

MODEL = FIXTURES / "minilm" / "all-MiniLM-L6-v2.f16.gguf"
FILE_LIMIT = 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@contextlib.contextmanager
def server(tmp_path, *options: str):
    """``lodevec serve`` (embeddings only) with a 1024 file limit; yields
    ``(url, process, log path)``."""
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lodevec", "serve", "--model", str(MODEL),
             "--addr", f"127.0.0.1:{port}", "--log-level", "info", *options],
            stdout=out, stderr=subprocess.STDOUT, env=child_env(), preexec_fn=_file_limit)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def sockets(port: int, n: int, first: bytes = b""):
    """``n`` connections to the port, each having sent ``first`` (and nothing more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            if first:
                s.sendall(first)
            held.append(s)
        yield held
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _closed(s: socket.socket, wait: float) -> bool:
    """The server closed ``s`` (EOF or reset, after any answer) within ``wait`` s."""
    s.settimeout(wait)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_idle_sockets_beyond_the_file_limit_do_not_lock_out_clients(tmp_path):
    with server(tmp_path) as (url, _proc, log):
        port = int(url.rsplit(":", 1)[1])
        t0 = time.monotonic()
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "warm"}, timeout=10).status_code == 200
        print(f"alone: {time.monotonic() - t0:.3f}s")
        with sockets(port, 1100) as held:
            t0 = time.monotonic()
            r = httpx.post(f"{url}/v1/embeddings", json={"input": "hello"}, timeout=10)
            took = time.monotonic() - t0
            assert r.status_code == 200, r.text
            assert took < 2.0, f"a normal request took {took:.2f}s behind {len(held)} idle sockets"
            # the oldest idle ones were closed to make room
            assert _closed(held[0], 2.0)
        lines = log.read_text(errors="replace").splitlines()
        print(f"1100 idle sockets: answered in {took:.3f}s, {len(lines)} log lines")
        assert len(lines) < 40, "\n".join(lines[-20:])
        assert "Traceback" not in "\n".join(lines)


def test_half_sent_headers_and_bodies_time_out(tmp_path):
    with server(tmp_path, "--header-timeout", "1", "--body-timeout", "1") as (url, _p, log):
        port = int(url.rsplit(":", 1)[1])
        body_start = (b"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                      b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inp")
        with sockets(port, 5) as idle, sockets(port, 5, b"GET /health HTTP/1.1\r\nho") as heads, \
                sockets(port, 5, body_start) as bodies:
            t0 = time.monotonic()
            for s in (*idle, *heads, *bodies):
                assert _closed(s, 4.0), "a slow client was not timed out"
            assert time.monotonic() - t0 < 4.0
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert "Traceback" not in log.read_text(errors="replace")


def test_sigterm_with_partial_bodies_exits_within_the_grace_period(tmp_path):
    grace = 3.0
    with server(tmp_path, "--graceful-timeout", str(grace), "--body-timeout", "600") \
            as (url, proc, log):
        port = int(url.rsplit(":", 1)[1])
        body_start = (b"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                      b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inp")
        with sockets(port, 50, body_start):
            time.sleep(0.5)  # the requests reached their handlers
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(grace + 10)
            took = time.monotonic() - t0
        text = log.read_text(errors="replace")
        print(f"SIGTERM with 50 partial bodies: exited in {took:.2f}s (grace {grace}s)")
        assert took < grace + 2.0, f"shutdown took {took:.1f}s\n{text[-2000:]}"
        assert "CancelledError" not in text and "Traceback" not in text, text[-3000:]
