"""Token ids built from the GGUF vocabulary equal the reference tokenizer's, exactly."""

from __future__ import annotations

import pytest

from conftest import MINILM, MINILM_FILE, NOMIC, load_golden
from lodevec.gguf import GGUFModel
from lodevec.text.tokenizer import PHANTOM_SPACE, WordPieceTokenizer, wordpiece_vocab

CASES = [
    (NOMIC / "tiny-nomic-v1.5.f16.gguf", NOMIC / "golden.json"),
    (NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf", NOMIC / "golden-long.json"),
    (MINILM_FILE, MINILM / "golden.json"),
    (MINILM_FILE, MINILM / "golden-seed.json"),
]


@pytest.mark.parametrize("model_file,golden", CASES, ids=lambda p: p.name)
def test_ids_equal_reference(model_file, golden):
    tok = WordPieceTokenizer(GGUFModel.open(model_file), max_tokens=100_000)
    texts = load_golden(golden)["texts"]
    assert texts
    for t in texts:
        enc = tok.encode(t["text"])
        assert enc.ids == t["ids"], t["text"][:60]
        assert len(enc.ids) == t["n_tokens"]
        assert not enc.truncated


def test_both_vocab_layouts():
    """30528 tokens padded with [PAD{i}] (newer files) and 30522 (older)."""
    nomic = GGUFModel.open(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    minilm = GGUFModel.open(MINILM_FILE)
    assert len(nomic.tokens) == 30528 and len(minilm.tokens) == 30522
    assert nomic.tokens[-1] == PHANTOM_SPACE + "[PAD30527]"
    vocab = wordpiece_vocab(nomic.tokens, nomic.token_types)
    assert vocab["[CLS]"] == 101 and vocab["the"] == 1996 and vocab["##s"] == 2015
    assert vocab["[PAD30527]"] == 30527


def test_truncation_keeps_sep_and_flags():
    tok = WordPieceTokenizer(GGUFModel.open(MINILM_FILE))
    assert tok.max_tokens == 512
    enc = tok.encode("word " * 600)
    assert len(enc.ids) == 512 and enc.ids[0] == 101 and enc.ids[-1] == 102
    assert enc.truncated and enc.n_original == 602


def test_special_tokens_in_text_are_matched():
    tok = WordPieceTokenizer(GGUFModel.open(MINILM_FILE))
    assert tok.encode("hello [SEP] world").ids == [101, 7592, 102, 2088, 102]
