"""Child processes of the S3 tests, run as ``python s3jobs.py JOB ARGS...`` (so that a
test can ``kill -9`` one): a writer of overlapping ids, and a reader with a resident copy.

The database URI and the AWS variables come from the environment the test gives.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

DIM = 16
IDENT = {"architecture": "nomic-bert", "model": "nomic-embed-text-v1.5.Q4_K_M.gguf",
         "digest": "a" * 64, "dim": DIM, "matryoshka_dim": None,
         "prompts": {"query": "search_query: ", "document": "search_document: "}}


def round_ids(writer: int, rnd: int, shared: int, own: int) -> list[str]:
    """The ids writer ``writer`` upserts in round ``rnd``: ``shared`` ids every writer
    upserts that round, then ``own`` ids of its own."""
    return ([f"s{rnd}-{i}" for i in range(shared)]
            + [f"w{writer}-{rnd}-{i}" for i in range(own)])


def vector_for(rid: str) -> np.ndarray:
    """A unit vector determined by the id (any writer writes the same one)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "little"))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def records(ids: list[str], writer: int, rnd: int) -> list[dict]:
    return [{"id": i, "text": f"{i} by writer {writer} in round {rnd}", "source": f"w{writer}",
             "chunk": rnd, "metadata": {"writer": writer}, "embedding": vector_for(i)}
            for i in ids]


def writer(uri: str, w: int, rounds: int, shared: int, own: int, batch_rows: int,
           go_file: str | None = None) -> None:
    """Upsert ``rounds`` rounds of overlapping ids; print one line per finished round."""
    from lodevec.store import Database

    coll = Database(uri, resident=False).create_or_open("default", identity=IDENT)
    if go_file:  # start together with the others
        from pathlib import Path

        while not Path(go_file).exists():
            time.sleep(0.02)
    for r in range(rounds):
        out = coll.upsert(records(round_ids(w, r, shared, own), w, r), batch_rows=batch_rows)
        lease = coll._t.lock  # (the S3 lease: takeovers tell a failure's story)
        print(json.dumps({"round": r, **out, "generation": getattr(lease, "generation", None),
                          "takeovers": getattr(lease, "takeovers", None)}), flush=True)


def reader(uri: str, wanted: str, timeout: float) -> None:
    """Load the resident copy, say "ready", then search until ``wanted`` comes first
    (a row another process writes meanwhile); print what it saw."""
    from lodevec.store import Database

    coll = Database(uri).open("default", identity=IDENT)
    coll.load_resident(wait=True)
    before = coll.resident_info()
    print(json.dumps({"ready": True, "version": before["version"]}), flush=True)
    q = vector_for(wanted)
    t0 = time.monotonic()
    hit = None
    while time.monotonic() - t0 < timeout:
        res = coll.search(q, k=1)
        if res and res[0].id == wanted:
            hit = res[0].id
            break
        time.sleep(0.2)
    coll.load_resident(wait=True)  # a second load: the tier follows the new version
    info = coll.resident_info()
    print(json.dumps({"hit": hit, "seconds": round(time.monotonic() - t0, 2),
                      "version_before": before["version"], "version_after": info["version"],
                      "loaded": info["loaded"]}), flush=True)


if __name__ == "__main__":
    job, *args = sys.argv[1:]
    if job == "writer":
        uri, w, rounds, shared, own, batch_rows, *go = args
        writer(uri, int(w), int(rounds), int(shared), int(own), int(batch_rows), *go)
    elif job == "reader":
        uri, wanted, timeout = args
        reader(uri, wanted, float(timeout))
    else:
        raise SystemExit(f"unknown job {job!r}")
