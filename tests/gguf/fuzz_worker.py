"""Fuzz worker: reads mutation specs (JSON lines) on stdin, answers one JSON line each.

For each spec it writes the mutated model (edits applied in place to its own working
copy, then undone; truncations as a separate short file), opens it and embeds
"hello world".  The outcome is ``clean`` (a LodevecError), ``finite`` (embeddings, all
finite), ``nonfinite``, ``traceback`` (any other exception) or ``hang`` (the alarm
fired).  A hang inside compiled code never reaches the alarm handler: the parent's
timeout catches that one.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no ``except Exception`` swallows it."""


def _alarm(signum, frame):
    raise Hang()


def _peak_rss_mb() -> float:
    """This mutation's peak RSS (VmHWM, reset before each one), or the process maximum."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main() -> None:
    workdir = Path(sys.argv[1])
    alarm_s = int(sys.argv[2])
    sources = [Path(p) for p in sys.argv[3:]]
    originals = [p.read_bytes() for p in sources]
    copies = []
    for i, data in enumerate(originals):
        c = workdir / f"w{os.getpid()}-{i}.gguf"
        c.write_bytes(data)
        copies.append(c)
    from lodevec import errors
    from lodevec.embedding import Encoder

    signal.signal(signal.SIGALRM, _alarm)
    for line in sys.stdin:
        spec = json.loads(line)
        m = spec["model"]
        target = copies[m]
        undo = []
        if spec.get("truncate") is not None:
            target = workdir / f"t{os.getpid()}.gguf"
            target.write_bytes(originals[m][:spec["truncate"]])
        else:
            with open(target, "r+b") as f:
                for pos, hexbytes in spec["edits"]:
                    new = bytes.fromhex(hexbytes)
                    undo.append((pos, originals[m][pos:pos + len(new)]))
                    f.seek(pos)
                    f.write(new)
        _reset_peak()
        out: dict = {"id": spec["id"]}
        t0 = time.perf_counter()
        signal.alarm(alarm_s)
        try:
            enc = Encoder.from_gguf(target, threads=1)
            vec = enc.embed(["hello world"])
            out["outcome"] = "finite" if bool((abs(vec) < float("inf")).all()) else "nonfinite"
            del enc, vec
        except Hang:
            out["outcome"] = "hang"
        except errors.LodevecError as e:
            out["outcome"], out["error"], out["message"] = "clean", type(e).__name__, str(e)[:300]
        except Exception as e:  # noqa: BLE001 - every other exception is a finding
            out["outcome"], out["error"] = "traceback", type(e).__name__
            out["message"] = "".join(traceback.format_exception(e))[-3000:]
        finally:
            signal.alarm(0)
        out["seconds"] = time.perf_counter() - t0
        out["rss_mb"] = _peak_rss_mb()
        gc.collect()  # drop the mapping before the bytes are restored
        if undo:
            with open(target, "r+b") as f:
                for pos, old in undo:
                    f.seek(pos)
                    f.write(old)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
