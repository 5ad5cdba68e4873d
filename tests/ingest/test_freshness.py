"""Staleness: indexed files compared with their stored chunks, without the chunk size."""

from __future__ import annotations

import os
import time

import pytest

from conftest import MINILM_FILE
from lodevec.embedding import Embedder
from lodevec.ingest import Indexer, chunk_text
from lodevec.ingest.freshness import check_freshness, covered_by, file_sources
from lodevec.store import Database


@pytest.fixture(scope="module")
def minilm():
    return Embedder.from_gguf(MINILM_FILE)


TEXT = "\n".join(f"line {i}: the quick brown fox number {i} jumps" for i in range(60)) + "\n"


@pytest.mark.parametrize("chunk_tokens,overlap", [(32, 0), (32, 8), (64, 16), (512, 32)])
def test_unchanged_text_is_covered_by_its_chunks(minilm, chunk_tokens, overlap):
    chunks = chunk_text(TEXT, minilm.token_spans(TEXT), chunk_tokens, overlap)
    assert covered_by(TEXT, chunks)
    assert covered_by(TEXT + "\n\n  ", chunks)  # blanks change no chunk
    assert not covered_by(TEXT.replace("number 30", "number 31"), chunks)
    assert not covered_by(TEXT + "one more line\n", chunks)
    assert not covered_by("a new first line\n" + TEXT, chunks)
    assert not covered_by(TEXT, [])


def test_file_sources_are_files_indexed_by_path():
    by_source = {"/a/x.md": {"/a/x.md#0": "h", "/a/x.md#1": "h"},
                 "recs.jsonl": {"r1": "h"}, "/a/recs.jsonl": {"r1": "h"}, "": {"z": "h"}}
    assert file_sources(by_source) == {"/a/x.md": ["/a/x.md#0", "/a/x.md#1"]}


def test_check_freshness(tmp_path, minilm):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in "abcd":
        (docs / f"{name}.txt").write_text(TEXT.replace("fox", f"fox {name}"))
    coll = Database(tmp_path / "db", resident=False).create_or_open(identity=minilm.identity())
    Indexer(coll, minilm, chunk_tokens=48, overlap=8).index_paths([docs])
    fresh = check_freshness(coll)
    assert (fresh.files, fresh.checked, fresh.stale, fresh.complete) == (4, 4, [], True)

    (docs / "a.txt").write_text(TEXT + "appended\n")
    (docs / "b.txt").unlink()
    (docs / "c.txt").write_bytes(b"\x00binary now")
    later = time.time() + 5
    os.utime(docs / "a.txt", (later, later))
    res = check_freshness(coll)
    assert res.to_dict()["stale_count"] == 3
    assert res.stale[0] == {"path": str(docs / "b.txt"), "reason": "deleted"}
    assert {(os.path.basename(s["path"]), s["reason"]) for s in res.stale} == {
        ("a.txt", "modified"), ("b.txt", "deleted"), ("c.txt", "no longer indexable: binary file")}
    # bounded: the most recently modified file is checked first
    one = check_freshness(coll, max_files=1)
    assert not one.complete and {s["path"] for s in one.stale} == {str(docs / "a.txt"),
                                                                 str(docs / "b.txt")}
