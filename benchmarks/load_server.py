"""Loopback load test of ``lodevec.server``: 1 and 16 concurrent clients.

Starts ``python -m lodevec serve`` on 127.0.0.1 for each model given, sends a fixed
number of ``POST /v1/embeddings`` requests (one short text each, ~16 tokens with the
task prefix, all different so the cache never answers) from N concurrent clients,
stops at the request count or the time cap, and prints one JSON document:
requests/s, p50/p99 latency, and the server's mean batch size per concurrency.

Usage::

    python benchmarks/load_server.py tests/fixtures/nomic-tiny/tiny-nomic-v1.5.Q4_K_M.gguf \\
        [MORE.gguf ...] [--requests 128] [--concurrency 1,16] [--time-cap 45]

Bounded and local only: not collected by pytest, and asv finds no benchmarks here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORDS = ("river stone garden window quiet music paper light market winter engine "
         "yellow silver morning travel letter forest signal number bridge planet "
         "coffee shadow mountain simple random vector search query document local").split()


def make_texts(n: int, words: int, seed: int) -> list[str]:
    """``n`` distinct short texts of ``words`` common words (+ a unique number)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f" {i}" for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, threads: int | None, log) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "lodevec", "serve", "--model", model, "--addr", f"127.0.0.1:{port}",
           "--cache-size", "0", "--log-level", "warning"]
    if threads:
        cmd += ["--threads", str(threads)]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready after {timeout:.0f}s")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


async def run_level(url: str, texts: list[str], concurrency: int, time_cap: float) -> dict:
    """Send ``len(texts)`` requests from ``concurrency`` clients (or until ``time_cap``)."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    tokens = 0
    next_i = 0
    t_start = time.perf_counter()
    deadline = t_start + time_cap

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_i, tokens
        while next_i < len(texts) and time.perf_counter() < deadline:
            text = texts[next_i]
            next_i += 1
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/embeddings", json={"input": text, "model": "bench"})
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if r.status_code != 200:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            tokens += r.json()["usage"]["prompt_tokens"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=max(60.0, time_cap), limits=limits) as client:
        before = (await client.get("/info")).json()["batcher"]
        t_start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - t_start
        after = (await client.get("/info")).json()["batcher"]
    done = len(latencies)
    batches = after["batches"] - before["batches"]
    return {
        "concurrency": concurrency, "requests": done, "errors": errors,
        "seconds": round(seconds, 3), "capped": done + sum(errors.values()) < len(texts),
        "req_per_s": round(done / seconds, 2) if seconds else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "mean_tokens": round(tokens / done, 1) if done else None,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "batches": batches,
        "mean_batch": round((after["inputs"] - before["inputs"]) / batches, 2) if batches else None,
        "max_batch": after["max_batch_size"],
    }


def bench_model(model: str, args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(os.devnull, "wb") if not args.server_log else open(args.server_log, "ab") as log:
        proc = start_server(model, port, args.threads, log)
        try:
            wait_ready(url, proc, args.startup_timeout)
            import httpx

            info = httpx.get(f"{url}/info", timeout=10).json()
            asyncio.run(run_level(url, make_texts(args.warmup, args.words, seed=-1), 1, args.time_cap))
            levels = [asyncio.run(run_level(url, make_texts(args.requests, args.words, seed=c),
                                            c, args.time_cap))
                      for c in args.concurrency]
        finally:
            proc.send_signal(signal.SIGTERM)  # graceful shutdown path
            try:
                rc = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    return {"model": Path(model).name, "dimension": info["dimension"], "threads": args.threads,
            "max_wait_ms": info["limits"]["max_wait_ms"], "max_batch_size": info["limits"]["max_batch_size"],
            "levels": levels, "server_exit": rc}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="GGUF files (missing ones are reported and skipped)")
    p.add_argument("--requests", type=int, default=128, help="requests per concurrency level")
    p.add_argument("--concurrency", default="1,16", help="comma-separated client counts")
    p.add_argument("--time-cap", type=float, default=45.0, help="seconds per concurrency level")
    p.add_argument("--words", type=int, default=9, help="words per text (~16 tokens with prefix)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests first")
    p.add_argument("--threads", type=int, default=None, help="server compute threads")
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--server-log", default=None, help="append the server's output here")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    out = []
    for model in args.models:
        if not Path(model).is_file():
            out.append({"model": model, "skipped": "file not found"})
            continue
        out.append(bench_model(model, args))
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
