"""Chunks are runs of whole lines within the token budget, overlapping by whole lines;
a line longer than a chunk is cut between words."""

from __future__ import annotations

import pytest

from conftest import MINILM_FILE
from lodevec.ingest.indexer import positions
from lodevec.text.chunking import chunk_spans


@pytest.fixture(scope="module")
def tok():
    from lodevec.embedding import Embedder

    return Embedder.from_gguf(MINILM_FILE).token_spans


TEXTS = {
    "lf": "".join(f"line {i} has a few words in it\n" for i in range(1, 80)),
    "crlf": "".join(f"line {i} has a few words in it\r\n" for i in range(1, 80)),
    "no_final_newline": "\n\n  indented first\n" + "\n".join(f"row {i} of data" for i in range(60)),
    "long_line": "short start\n" + "word " * 400 + "\nend line",
    "unicode": "".join(f"ligne {i} : café, thé, crème brûlée\n" for i in range(40)),
}


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("size,overlap", [(16, 0), (32, 8), (64, 16)])
def test_chunks_are_whole_lines_within_budget(tok, name, size, overlap):
    text = TEXTS[name]
    spans = chunk_spans(text, tok(text), size, overlap)
    assert spans
    lines = text.split("\n")
    raw = text.encode("utf-8")
    for (a, b), pos in zip(spans, positions(text, spans), strict=True):
        chunk = text[a:b]
        assert len(tok(chunk)) <= size
        assert chunk.strip() and not chunk[-1].isspace()
        assert a == 0 or text[a - 1] == "\n" or text[a - 1] == " "  # a line start or a word gap
        assert b == len(text) or text[b] in "\r\n " or text[b - 1] == " "
        assert raw[pos["byte_start"]:pos["byte_end"]].decode() == chunk
        assert chunk.split("\n")[0] in lines[pos["line_start"] - 1]
        assert pos["line_end"] - pos["line_start"] == chunk.count("\n")
    # the chunks cover every word, in order
    covered = 0
    for a, b in spans:
        assert not text[covered:a].strip()
        covered = max(covered, b)
    assert not text[covered:].strip()
    if overlap and name in ("lf", "crlf"):
        assert all(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


def test_short_text_is_one_chunk_keeping_indentation(tok):
    text = "\n\n    def f():\n        return 1\n\n"
    assert [text[a:b] for a, b in chunk_spans(text, tok(text), 64, 8)] == \
        ["    def f():\n        return 1"]


def test_bom_and_latin1_byte_offsets():
    text = "première ligne\nseconde ligne"
    spans = [(0, 14), (15, len(text))]
    bom = positions(text, spans, "utf-8-sig")
    assert bom[0]["byte_start"] == 3 and bom[1]["line_start"] == 2
    data = text.encode("cp1252")
    for (a, b), pos in zip(spans, positions(text, spans, "cp1252"), strict=True):
        assert data[pos["byte_start"]:pos["byte_end"]].decode("cp1252") == text[a:b]
