"""asv benchmarks of start-up: one-shot ``lodevec search`` on a 100k-chunk database,
``lodevec --help`` and ``lodevec stats``, each timed as fresh processes.

Run: ``asv run --python=same --bench bench_startup`` from the repo root.  The database
(100k chunks of all-MiniLM-L6-v2's identity, random unit vectors, indexed) is built once
per run (``setup_cache``).  Each ``track_*`` reports the median wall milliseconds of 10
processes, interleaved with the other commands' (:mod:`lodevec.bench.startup`);
``lodevec bench startup`` prints the same rows with CPU time and load.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

if importlib.util.find_spec("lodevec") is None:  # not installed: the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lodevec.bench.startup import COMMANDS, build_database, time_commands  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minilm" / "all-MiniLM-L6-v2.f16.gguf"
ROWS, RUNS = 100_000, 10


class Startup:
    """Median wall milliseconds of one-shot commands (fresh interpreter each)."""

    timeout = 1800
    unit = "ms"

    def setup_cache(self):
        root = tempfile.mkdtemp(prefix="lodevec-asv-startup-")
        db = str(Path(root) / "db")
        build_database(db, MODEL, ROWS)
        commands = {name: [a.format(db=db, model=str(MODEL)) for a in argv]
                    for name, argv in COMMANDS.items()}
        try:
            return {r["command"]: r["median_ms"] for r in time_commands(commands, RUNS)}
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def track_search_100k_ms(self, medians):
        return medians["search"]

    def track_help_ms(self, medians):
        return medians["help"]

    def track_stats_100k_ms(self, medians):
        return medians["stats"]
