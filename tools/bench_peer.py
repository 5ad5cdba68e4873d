#!/usr/bin/env python3
"""lodevec at each kernel ISA level against llama.cpp's llama-bench, on one GGUF file.

    python tools/bench_peer.py --model ../shared/perf/perf-nomic-v1.5-random.Q4_K_M.gguf \\
        --llama-native /work/llama/native/bin/llama-bench \\
        --llama-avx2 /work/llama/avx2/bin/llama-bench [--levels avx2,avx512,amx] [--rounds 3]

Each round runs, in turn, ``lodevec bench`` once per level (``LODEVEC_ISA=<level>``)
and llama-bench once per peer build (``-embd 1 -t THREADS -p 16,128,512 -n 0 --repack
0,1``: the default weight repacking and none); rounds interleave, so slow phases of
a loaded machine fall on both sides.  The table gives the median over rounds of
tokens/s per shape, llama.cpp's better repack setting per shape, and the ratio.
Peers: ``avx2`` against the AVX2-only build, ``avx512`` and ``amx`` against the
native build without AMX (llama.cpp's fastest configuration on such a CPU without
AMX).  ``baseline`` has no peer and is skipped.

llama-bench times one sequence per test (it has no option for several documents in a
batch), so the batch-16 rows compare lodevec's 16 documents of N tokens with
llama.cpp's single sequence of N tokens (marked ``*``).

Every command is printed before it runs.  Timing belongs on a quiet machine; this
script is never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

#: lodevec level -> which llama.cpp build it is compared with
PEER = {"avx2": "avx2", "avx512": "native", "amx": "native", "native": "native"}


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _show(cmd: list[str], env: dict[str, str] | None = None) -> None:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    print(f"$ {prefix + ' ' if prefix else ''}{shlex.join(cmd)}", file=sys.stderr, flush=True)


def run_lodevec(args, level: str) -> dict[tuple[int, int], float]:
    """tokens/s per (seq_len, batch) of one ``lodevec bench`` run at ``level``."""
    cmd = [*shlex.split(args.lodevec), "bench", "--model", str(args.model),
           "--seq-len", ",".join(map(str, args.seq_len)), "--batch", ",".join(map(str, args.batch)),
           "--threads", str(args.threads), "--min-time", str(args.min_time), "--json"]
    extra = {"LODEVEC_ISA": level}
    _show(cmd, extra)
    r = subprocess.run(cmd, env={**os.environ, **extra}, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"lodevec bench at {level} failed ({r.returncode}):\n{r.stderr}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return {(row["seq_len"], row["batch"]): float(row["tokens_per_s"]) for row in rows}


def run_llama(args, binary: str) -> dict[tuple[int, int], float]:
    """tokens/s per (n_prompt, repack) of one llama-bench run."""
    cmd = [binary, "-m", str(args.model), "-embd", "1", "-t", str(args.threads),
           "-p", ",".join(map(str, args.seq_len)), "-n", "0", "--repack", "0,1",
           "-r", str(args.llama_reps), "-o", "jsonl"]
    _show(cmd)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"llama-bench {binary} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out[(int(row["n_prompt"]), int(bool(row["repack"])))] = float(row["avg_ts"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="GGUF file both sides run")
    p.add_argument("--llama-native", help="llama-bench built -march=native minus AMX")
    p.add_argument("--llama-avx2", help="llama-bench built for AVX2 only")
    p.add_argument("--levels", default="avx2,avx512", help="lodevec levels (comma-separated)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--seq-len", type=_ints, default=[16, 128, 512])
    p.add_argument("--batch", type=_ints, default=[1, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=2.0, help="lodevec bench seconds per shape")
    p.add_argument("--llama-reps", type=int, default=3, help="llama-bench -r (repetitions per test)")
    p.add_argument("--lodevec", default=f"{shlex.quote(sys.executable)} -m lodevec",
                   help="how to run lodevec (default: this Python's -m lodevec)")
    p.add_argument("--json", type=Path, help="also write every round's figures here")
    args = p.parse_args(argv)

    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip() and lv.strip() != "baseline"]
    unknown = [lv for lv in levels if lv not in PEER]
    if unknown:
        p.error(f"--levels: no llama.cpp peer for {unknown}; choose from {sorted(PEER)}")
    builds = {"native": args.llama_native, "avx2": args.llama_avx2}
    for lv in levels:
        if not builds[PEER[lv]]:
            p.error(f"level {lv} needs --llama-{PEER[lv]}")
        if not os.access(builds[PEER[lv]], os.X_OK):
            p.error(f"--llama-{PEER[lv]}: {builds[PEER[lv]]} is not an executable")
    peers = sorted({PEER[lv] for lv in levels})

    ours: dict[str, list[dict]] = defaultdict(list)
    theirs: dict[str, list[dict]] = defaultdict(list)
    for rnd in range(args.rounds):
        print(f"== round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for lv in levels:
            ours[lv].append(run_lodevec(args, lv))
        for peer in peers:
            theirs[peer].append(run_llama(args, builds[peer]))

    def med(runs: list[dict], key) -> float | None:
        vals = [r[key] for r in runs if key in r]
        return statistics.median(vals) if vals else None

    table = []
    print(f"\nmedian of {args.rounds} interleaved round(s), {args.threads} threads, tokens/s "
          f"({args.model.name})")
    print(f"{'level':<8} {'tokens':>6} {'batch':>5} {'lodevec':>9} {'llama.cpp':>10} "
          f"{'repack':>6} {'ratio':>6}  peer")
    for lv in levels:
        peer = PEER[lv]
        for n in args.seq_len:
            rp = {rk: med(theirs[peer], (n, rk)) for rk in (0, 1)}
            best = max((v, rk) for rk, v in rp.items() if v is not None) if any(rp.values()) else (None, None)
            for b in args.batch:
                mine = med(ours[lv], (n, b))
                ratio = f"{mine / best[0]:.2f}x" if mine and best[0] else "-"
                mark = "*" if b > 1 else " "
                print(f"{lv:<8} {n:>6} {b:>5} {mine or 0:>9.1f} {best[0] or 0:>9.1f}{mark} "
                      f"{best[1] if best[1] is not None else '-':>6} {ratio:>6}  {peer}")
                table.append({"level": lv, "seq_len": n, "batch": b, "lodevec": mine,
                              "llama": best[0], "llama_repack": best[1],
                              "llama_repack0": rp[0], "llama_repack1": rp[1], "peer": peer})
    print("* llama-bench runs one sequence per test: batch-16 rows compare with its single sequence")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "lodevec_rounds": {
            lv: [{f"{k[0]}x{k[1]}": v for k, v in r.items()} for r in runs] for lv, runs in ours.items()},
            "llama_rounds": {pr: [{f"{k[0]}/repack{k[1]}": v for k, v in r.items()} for r in runs]
                             for pr, runs in theirs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
