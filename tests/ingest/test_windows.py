"""One large file is chunked a window at a time (issue 16, item 10: an 8 MB file took
over a gigabyte while the whole text was tokenized for offsets)."""

from __future__ import annotations

import sys
from pathlib import Path

from lodevec.ingest.indexer import WINDOW_CHARS, text_windows

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox import run_limited  # noqa: E402

MINILM = Path(__file__).resolve().parents[1] / "fixtures" / "minilm" / "all-MiniLM-L6-v2.f16.gguf"


def test_windows_cover_the_text_and_cut_at_breaks():
    text = ("word " * 30 + "\n") * 2000 + "x" * 300_000
    spans = text_windows(text, WINDOW_CHARS)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(b == c for (_, b), (c, _) in zip(spans, spans[1:], strict=False))
    assert all(0 < b - a <= WINDOW_CHARS for a, b in spans)
    assert text[spans[0][1] - 1] == "\n"  # a line break, not mid-word
    assert text_windows("short", WINDOW_CHARS) == [(0, 5)]


def test_a_large_file_is_chunked_at_bounded_memory():
    code = f"""
from lodevec.embedding import Embedder, Encoder
from lodevec.ingest.indexer import Indexer
emb = Embedder(Encoder.from_gguf({str(MINILM)!r}))
ix = Indexer.__new__(Indexer); ix.embedder = emb; ix.chunk_tokens = 256; ix.overlap = 32
base = None
with open("/proc/self/status") as f:
    base = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
text = "lorem ipsum dolor sit amet vector search\\n" * 50_000  # 2 MB
n = len(ix._spans(text))
report(chunks=n, base_mb=base)
"""
    out = run_limited(code, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    r = out.result
    assert r["chunks"] > 100
    # the whole-text tokenization took several hundred MB for this text
    assert r["maxrss_mb"] - r["base_mb"] < 120, r
