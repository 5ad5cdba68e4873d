"""Fuzzed model files: a seeded corpus of mutations of both fixture models, each opened
and embedding "hello world" in a worker under a memory limit and a timeout.

Allowed outcomes: a clean ``LodevecError`` or finite embeddings.  Never a hang, a
crash (signal), a traceback or a non-finite vector.  ``LODEVEC_FUZZ_MUTATIONS=N``
runs N mutations (default 300); ``LODEVEC_FUZZ_SEED`` changes the corpus.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from conftest import MINILM_FILE, NOMIC
from lodevec.gguf.header import read_header
from sandbox import child_env, limit_memory

MODELS = [NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf", MINILM_FILE]
WORKER = Path(__file__).with_name("fuzz_worker.py")
WORKERS = 2
TIMEOUT_S = 20   # the parent's limit per mutation (a hang in compiled code)
ALARM_S = 15     # the worker's own limit (a hang in Python code)
#: values written over counts, lengths and offsets
SPECIAL_U64 = [0, 1, 2, 3, 31, 32, 33, 255, 2**16, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
               2**63 - 1, 2**63, 2**64 - 32, 2**64 - 1]
SPECIAL_U32 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16, 30, 31, 39, 40, 99, 2**16,
               2**31, 2**32 - 1]
SPECIAL_F32 = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-45, 1e38, 3.4e38]


def _positions(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Byte positions of real fields, by what they hold: (position, struct format)."""
    h = read_header(path)
    pos: dict[str, list[tuple[int, str]]] = {"count": [(8, "<Q"), (16, "<Q")], "type": [],
                                             "offset": [], "dims": [], "scalar": [], "boundary": []}
    for f in h.fields.values():
        pos["count"].append((f.offsets["key_len"], "<Q"))
        pos["type"].append((f.offsets["type"], "<I"))
        pos["boundary"].append((f.offsets["key_len"], ""))
        if "count" in f.offsets:
            pos["count"].append((f.offsets["count"], "<Q"))
            pos["type"].append((f.offsets["item_type"], "<I"))
        elif f.type.name == "STRING":
            pos["count"].append((f.offsets["value"], "<Q"))
        elif f.type.name in ("UINT32", "INT32"):
            pos["scalar"].append((f.offsets["value"], "<I"))
        elif f.type.name == "FLOAT32":
            pos["scalar"].append((f.offsets["value"], "<f"))
    for t in h.tensors:
        pos["count"].append((t.offsets["name_len"], "<Q"))
        pos["type"].append((t.offsets["type"], "<I"))
        pos["type"].append((t.offsets["n_dims"], "<I"))
        pos["offset"].append((t.offsets["offset"], "<Q"))
        pos["boundary"].append((t.offsets["name_len"], ""))
        for i in range(len(t.dims)):
            pos["dims"].append((t.offsets["n_dims"] + 4 + 8 * i, "<Q"))
    pos["boundary"].append((h.data_offset, ""))
    pos["meta"] = [(0, str(h.data_offset)), (0, str(h.file_size)), (0, str(h.alignment))]
    pos["tensors"] = [(t.offsets["offset"], str(t.offset)) for t in h.tensors]
    return pos


def mutations(n: int, seed: int) -> list[dict]:
    """``n`` mutation specs over both models (alternating), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    info = [_positions(p) for p in MODELS]
    out = []
    for i in range(n):
        m = i % len(MODELS)
        pos = info[m]
        data_offset, size, align = (int(v) for _, v in pos["meta"])
        kind = ["flip", "flip_data", "truncate", "count", "offset", "type", "dims", "scalar",
                "multi"][i // len(MODELS) % 9]
        spec: dict = {"id": i, "model": m, "kind": kind, "edits": []}

        def choose(values):  # by index: rng.choice would turn big ints into floats
            return values[int(rng.integers(len(values)))]

        def pick(name, pos=pos):
            return choose(pos[name])

        def put(at, fmt, value, spec=spec):
            spec["edits"].append([int(at), struct.pack(fmt, value).hex()])

        if kind == "flip":      # a few random bytes in the header
            for at in rng.integers(4, data_offset, size=int(rng.integers(1, 9))):
                put(at, "<B", int(rng.integers(256)))
        elif kind == "flip_data":  # bytes in the weights: NaN/inf f16 patterns among them
            for at in rng.integers(data_offset, size - 2, size=int(rng.integers(1, 64))):
                put(at, "<H", choose([0x7C00, 0x7E00, 0xFC00, 0xFFFF, int(rng.integers(65536))]))
        elif kind == "truncate":
            choice = rng.integers(3)
            keep = (pick("boundary")[0] + int(rng.integers(-16, 16)) if choice == 0
                    else int(rng.integers(0, data_offset)) if choice == 1
                    else size - int(rng.integers(1, 4096)))
            spec["truncate"] = max(0, min(keep, size - 1))
        elif kind == "count":
            at, fmt = pick("count")
            put(at, fmt, choose(SPECIAL_U64))
        elif kind == "offset":
            at, _ = pick("offset")
            others = [int(v) for _, v in pos["tensors"]]
            orig = int(dict(pos["tensors"])[at])
            value = choose([orig + 1, orig + align, orig - align, orig + 7, 0,
                                    choose(others), 2**63, 2**64 - align,
                                    size, size - data_offset])
            put(at, "<Q", value % 2**64)
        elif kind == "type":
            at, fmt = pick("type")
            put(at, fmt, choose(SPECIAL_U32))
        elif kind == "dims":
            at, fmt = pick("dims")
            put(at, fmt, choose([0, 1, 2, 32, 256, 257, 512, 4096, 2**31, 2**40, 2**63]))
        elif kind == "scalar":
            at, fmt = pick("scalar")
            value = (choose(SPECIAL_F32) if fmt == "<f"
                     else choose(SPECIAL_U32 + [64, 128, 384, 1024, 2**20, 2**20 + 1, 8_388_608]))
            put(at, fmt, value)
        else:                   # several edits of different kinds at once
            for name in rng.choice(["count", "type", "dims", "scalar"], size=2):
                at, fmt = pick(str(name))
                if fmt == "<f":
                    put(at, fmt, choose(SPECIAL_F32))
                else:
                    put(at, fmt, choose(SPECIAL_U32 if fmt == "<I" else SPECIAL_U64))
        out.append(spec)
    return out


class Worker:
    """One long-lived worker process; restarted when it dies or hangs."""

    def __init__(self, workdir: Path, stderr_path: Path):
        self.workdir, self.stderr_path = workdir, stderr_path
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.stderr = open(self.stderr_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.workdir), str(ALARM_S), *map(str, MODELS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=child_env(), preexec_fn=limit_memory)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        self.stderr.close()

    def run(self, spec: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.stop()
                self.restarts += 1
            self.start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        # the first answer also waits for the worker's start-up
        deadline = t0 + TIMEOUT_S + (10 if spec.get("first") else 0)
        while True:
            left = deadline - time.perf_counter()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                self.stop()
                self.proc = None
                return {"id": spec["id"], "outcome": "hang", "seconds": time.perf_counter() - t0}
            line = self.proc.stdout.readline()
            if not line:   # died: killed by a signal or exited
                code = self.proc.wait()
                return {"id": spec["id"], "outcome": "crash", "returncode": code,
                        "seconds": time.perf_counter() - t0}
            return json.loads(line)


def run_corpus(specs: list[dict], workdir: Path) -> list[dict]:
    shares = [specs[i::WORKERS] for i in range(WORKERS)]
    results: list[dict] = []
    lock = threading.Lock()

    def drive(k: int) -> None:
        w = Worker(workdir, workdir / f"worker{k}.stderr")
        try:
            for j, spec in enumerate(shares[k]):
                res = w.run({**spec, "first": j == 0 or w.proc is None})
                res["kind"], res["model"] = spec["kind"], MODELS[spec["model"]].name
                with lock:
                    results.append(res)
        finally:
            if w.proc is not None:
                w.stop()

    threads = [threading.Thread(target=drive, args=(k,)) for k in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results, key=lambda r: r["id"])


def test_fuzzed_models_fail_cleanly(tmp_path):
    n = int(os.environ.get("LODEVEC_FUZZ_MUTATIONS", "300"))
    seed = int(os.environ.get("LODEVEC_FUZZ_SEED", "16"))
    specs = mutations(n, seed)
    t0 = time.perf_counter()
    results = run_corpus(specs, tmp_path)
    wall = time.perf_counter() - t0
    counts = Counter(r["outcome"] for r in results)
    clean = [r for r in results if r["outcome"] == "clean"]
    slowest = max(clean, key=lambda r: r["seconds"], default=None)
    worst_rss = max(results, key=lambda r: r.get("rss_mb", 0))
    summary = {
        "mutations": len(results), "seconds": round(wall, 1), "outcomes": dict(counts),
        "errors": dict(Counter(r["error"] for r in clean)),
        "slowest_clean": slowest and {k: slowest[k] for k in ("seconds", "kind", "model", "message")},
        "peak_rss_mb": worst_rss.get("rss_mb"), "peak_rss_case": worst_rss.get("kind"),
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\nfuzz:", json.dumps(summary, indent=1))
    bad = [r for r in results if r["outcome"] not in ("clean", "finite")]
    assert len(results) == n
    assert bad == [], json.dumps(bad[:5], indent=1)
    for k in range(WORKERS):
        log = (tmp_path / f"worker{k}.stderr").read_text()
        assert "Traceback" not in log, log[-3000:]
