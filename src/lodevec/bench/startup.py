"""Start-up benchmark: one-shot ``lodevec search``, ``lodevec --help`` and ``lodevec
stats`` timed end to end as fresh processes, the median of N runs each.

The database is a real one (``rows`` chunks written through the store with the model's
identity, random unit vectors, the vector index built as ``index`` would), so
``search`` opens the table, loads the recorded model, embeds the query and searches
the index like a user's search; ``stats`` reads the same table.  Runs are interleaved
(search, help, stats, search, ...), so a change in the machine's load hits every
command alike; the load average before and after is reported with each row, and the
CPU time of the child beside its wall time (less sensitive to other processes, but
not immune).  ``lodevec bench startup`` prints the rows this returns; the numbers and
how they were taken are in docs/performance.md, "Start-up".
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["COMMANDS", "build_database", "time_commands", "run_startup_bench", "main_startup"]

#: the commands timed: name -> argv after ``lodevec`` (``{db}``, ``{model}`` filled in)
COMMANDS: dict[str, list[str]] = {
    "search": ["search", "--db", "{db}", "--model", "{model}", "how do I rotate the logs?"],
    "help": ["--help"],
    "stats": ["stats", "--db", "{db}"],
}
#: what the console script runs (``lodevec`` is ``console_main``)
_ENTRY = "import sys; sys.argv[0] = 'lodevec'; from lodevec.cli import console_main; console_main()"
_WORDS = ("logs rotate python rust file server network parse json http email queue cache "
          "thread socket index table vector query model token").split()


def build_database(path: str | os.PathLike, model: str | os.PathLike, rows: int,
                   progress: Callable[[str], None] | None = None) -> None:
    """A collection of ``rows`` chunks at ``path`` for ``model``: random unit vectors
    (searching them costs what searching real ones does), written through the store."""
    import numpy as np

    from ..embedding import Embedder
    from ..store import Database

    emb = Embedder.from_gguf(model, cache_size=0)
    db = Database(path, resident=False, auto_index=False)
    coll = db.create_or_open("default", identity=emb.identity())
    rng = np.random.default_rng(0)
    words = np.asarray(_WORDS)
    step = 20_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        vecs = rng.standard_normal((n, emb.dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        text = [" ".join(rng.choice(words, 40)) for _ in range(n)]
        coll.upsert([{"id": f"f{(start + i) // 20}.txt#{(start + i) % 20}", "text": text[i],
                      "source": f"dir{(start + i) % 7}/f{(start + i) // 20}.txt",
                      "chunk": (start + i) % 20} for i in range(n)], embeddings=vecs)
        if progress:
            progress(f"wrote {start + n} of {rows} rows")
    if progress:
        progress("building the indexes (as `lodevec index` does)")
    coll.maintain()
    if coll.stats()["index"]["unindexed_rows"] and rows >= 256:
        coll.build_vector_index()
    coll.optimize(cleanup_older_than=0)


def _run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process; it must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[3:])} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_commands(commands: dict[str, Sequence[str]], runs: int,
                  env: dict | None = None, python: str = sys.executable) -> list[dict]:
    """Median (and min, max) wall and CPU milliseconds of each command over ``runs``
    fresh processes, the commands interleaved run by run."""
    env = dict(os.environ if env is None else env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    loads: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # one untimed run each: the file cache is warm
        _run_once([python, "-c", _ENTRY, *argv], env)
    for _ in range(runs):
        for name, argv in commands.items():
            loads[name].append(os.getloadavg()[0])
            times[name].append(_run_once([python, "-c", _ENTRY, *argv], env))
    out = []
    for name, ts in times.items():
        walls = [t[0] * 1e3 for t in ts]
        out.append({"command": name, "runs": runs,
                    "median_ms": round(statistics.median(walls), 1),
                    "min_ms": round(min(walls), 1), "max_ms": round(max(walls), 1),
                    "cpu_median_ms": round(statistics.median(t[1] * 1e3 for t in ts), 1),
                    "load_min": round(min(loads[name]), 2), "load_max": round(max(loads[name]), 2)})
    return out


def run_startup_bench(model: str | os.PathLike, db: str | os.PathLike | None = None,
                      rows: int = 100_000, runs: int = 10,
                      progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time :data:`COMMANDS` on ``db`` (built with ``rows`` chunks of ``model`` in a
    temporary folder when None, and removed after).

    Returns:
        One row per command: ``command``, ``runs``, ``median_ms``, ``min_ms``,
        ``max_ms``, ``cpu_median_ms``, ``load_min``, ``load_max`` (1-minute load
        average seen before the runs), plus ``rows`` and ``model``.
    """
    model = str(Path(model).resolve())
    tmp = None
    if db is None:
        tmp = tempfile.mkdtemp(prefix="lodevec-startup-")
        db = os.path.join(tmp, "db")
        if progress:
            progress(f"building a {rows}-row database in {db}")
        build_database(db, model, rows, progress)
    try:
        commands = {name: [a.format(db=db, model=model) for a in argv]
                    for name, argv in COMMANDS.items()}
        if progress:
            progress(f"timing {', '.join(commands)}: {runs} runs each, interleaved")
        rows_out = time_commands(commands, runs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return [dict(r, rows=rows if tmp is not None else None, model=Path(model).name)
            for r in rows_out]


def main_startup(args, out) -> int:
    """``lodevec bench startup``: uses ``--model`` (default: the cached model), ``--rows``,
    and ``--db`` / ``--runs`` when the parser has them."""
    import json

    from ..hub import resolve_model

    say = None if args.json else (lambda msg: print(f"... {msg}", file=sys.stderr, flush=True))
    rows = run_startup_bench(resolve_model(args.model), db=getattr(args, "db", None),
                             rows=args.rows, runs=getattr(args, "runs", None) or 10,
                             progress=say)
    for row in rows:
        out.write((json.dumps(row) if args.json else
                   "  ".join(f"{k}={v}" for k, v in row.items())) + "\n")
    return 0
