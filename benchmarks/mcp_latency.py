"""End-to-end latency of an MCP ``search`` call over stdio (client to result).

Indexes a small corpus (the golden seed's documents plus ``--files`` generated notes)
into a temporary database, starts ``python -m lodevec mcp`` through the SDK's own
``stdio_client``, warms up, then times ``--calls`` ``search`` tool calls one after the
other, each with a different query (so the embedding cache never answers), and a
second round repeating one query (the cached path).  Prints one JSON document.

Usage::

    python benchmarks/mcp_latency.py [--model tests/fixtures/minilm/all-MiniLM-L6-v2.f16.gguf]
        [--calls 50] [--files 200]

Bounded and local only: not collected by pytest, and asv finds no benchmarks here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINILM = ROOT / "tests" / "fixtures" / "minilm"

WORDS = ("river stone garden window quiet music paper light market winter engine yellow "
         "silver morning travel letter forest signal number bridge planet coffee shadow").split()


def make_corpus(folder: Path, files: int) -> None:
    seed = json.loads((MINILM / "golden-seed.json").read_text())["seed"]
    for name, text in seed["documents"]:
        (folder / f"{name}.txt").write_text(text + "\n")
    for i in range(files):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)]
        (folder / f"note{i:04}.txt").write_text(f"Note {i}: " + " ".join(words) + ".\n")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))


async def measure(db: Path, model: str, calls: int) -> dict:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    env = child_env()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lodevec", "mcp", "--db", str(db), "--model", model],
        env=env)
    t0 = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        startup = time.perf_counter() - t0

        async def timed(query: str) -> float:
            t = time.perf_counter()
            res = await session.call_tool("search", {"query": query, "k": 8})
            dt = (time.perf_counter() - t) * 1000
            assert not res.is_error and res.structured_content["results"], res
            return dt

        for i in range(5):  # first forward, resident copy loaded in the background
            await timed(f"warm-up query {i}")
        distinct = [await timed(f"programming languages and {WORDS[i % len(WORDS)]} {i}")
                    for i in range(calls)]
        cached = [await timed("programming languages") for _ in range(calls)]
    return {"startup_s": round(startup, 2),
            "distinct_queries_ms": _summary(distinct), "repeated_query_ms": _summary(cached)}


def _summary(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": round(statistics.median(xs), 2),
            "p90": round(percentile(xs, 0.9), 2), "min": round(min(xs), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(MINILM / "all-MiniLM-L6-v2.f16.gguf"))
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--files", type=int, default=200)
    args = p.parse_args()
    import anyio

    with tempfile.TemporaryDirectory() as tmp:
        docs, db = Path(tmp) / "docs", Path(tmp) / "db"
        docs.mkdir()
        make_corpus(docs, args.files)
        subprocess.run([sys.executable, "-m", "lodevec", "index", "--db", str(db), "--model",
                        args.model, str(docs)], check=True, stdout=subprocess.DEVNULL,
                       env=child_env())
        result = anyio.run(measure, db, args.model, args.calls)
    print(json.dumps({"model": Path(args.model).name, "rows": args.files + 3, **result}, indent=2))


if __name__ == "__main__":
    main()
