"""Run code in a child process under a memory limit and a timeout (hostile-input tests)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass

#: address-space limit for a child: far above what the fixtures need, far below a runaway
MEMORY_LIMIT = 1536 * 1024 * 1024


def limit_memory(limit: int = MEMORY_LIMIT) -> None:
    """``preexec_fn``: cap the child's address space (a runaway allocation fails fast)."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def child_env() -> dict[str, str]:
    """``conftest.child_env`` (the lodevec under test, installed or not, first on
    PYTHONPATH) on one compute thread."""
    from conftest import child_env as base

    env = base()
    env.setdefault("LODEVEC_NUM_THREADS", "1")
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


@dataclass
class Outcome:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str

    @property
    def result(self) -> dict:
        """The JSON object the child printed last."""
        return json.loads(self.stdout.strip().splitlines()[-1])


#: prepended to every snippet: report peak RSS and the outcome as one JSON line.  The
#: peak is VmHWM, this image's own: ru_maxrss survives exec, so a child forked from a
#: big pytest process would report the parent's size
PRELUDE = """
import json, resource, sys, time
def report(**kw):
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kw["maxrss_mb"] = hwm / 1024
    print(json.dumps(kw), flush=True)
"""


def run_limited(code: str, timeout: float = 20, limit: int = MEMORY_LIMIT) -> Outcome:
    """Run ``code`` (after ``PRELUDE``) in a fresh interpreter with ``limit`` bytes of
    address space; a child still running after ``timeout`` seconds is killed."""
    try:
        p = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True,
                           timeout=timeout, env=child_env(), preexec_fn=lambda: limit_memory(limit))
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Outcome(None, out, "timed out")
    return Outcome(p.returncode, p.stdout, p.stderr)
