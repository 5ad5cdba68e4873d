"""WordPiece tokenizer rebuilt from the vocabulary stored in a GGUF file.

GGUF stores BERT vocabularies in "phantom space" form: a token that starts a word
carries a leading U+2581, a ``##`` continuation is stored bare, and control tokens
(``[CLS]`` ...) are stored as is.  We undo that and hand the vocabulary to the
``tokenizers`` library, which implements BERT's normaliser and WordPiece exactly as
the reference (HF) tokenizer does, so no tokenizer.json is needed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

from ..gguf.model import GGUFModel
from .tokenizer_cache import cached_tokenizer

PHANTOM_SPACE = "\u2581"
_CONTROL = 3  # llama.cpp token type: control


@dataclass(frozen=True)
class Encoding:
    """Token ids of one text, ``[CLS] ... [SEP]``, and whether it was cut short."""

    ids: list[int]
    truncated: bool
    n_original: int  # token count before truncation


def wordpiece_vocab(tokens: list[str], token_types) -> dict[str, int]:
    """Undo the phantom-space form: ``'▁word' -> 'word'``, ``'ing' -> '##ing'``."""
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok.startswith(PHANTOM_SPACE):
            piece = tok[len(PHANTOM_SPACE):]
        elif int(token_types[i]) == _CONTROL or (tok.startswith("[") and tok.endswith("]")):
            piece = tok
        else:
            piece = "##" + tok
        # the first id wins, as in HF's vocab loading order
        vocab.setdefault(piece, i)
    return vocab


def vocab_digest(model: GGUFModel) -> str:
    """sha256 (hex) of everything :func:`build_tokenizer` reads from a model: the tokens,
    their types, the special token ids and the lowercase flag.  Two files with the same
    vocabulary (quantizations of one model) share it; it costs a few ms, not a hash of
    the whole file."""
    tokens = model.tokens
    h = hashlib.sha256()
    head = {"tokens": len(tokens), "special": model.special, "lowercase": bool(model.lowercase)}
    h.update(json.dumps(head, sort_keys=True).encode("ascii"))
    h.update(np.asarray(model.token_types, dtype="<i4").tobytes())
    # lengths then the concatenation: no separator a token could contain
    h.update(np.fromiter(map(len, tokens), dtype="<i8", count=len(tokens)).tobytes())
    h.update("".join(tokens).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def build_tokenizer(model: GGUFModel) -> Tokenizer:
    """The ``tokenizers`` tokenizer of a GGUF model's vocabulary (BERT normaliser,
    WordPiece, ``[CLS] $A [SEP]``, the special tokens matched as such)."""
    sp = model.special
    tokens = model.tokens
    vocab = wordpiece_vocab(tokens, model.token_types)
    unk = tokens[sp["unk"]]
    tk = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None,
        lowercase=model.lowercase)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_tok, sep_tok = tokens[sp["cls"]], tokens[sp["sep"]]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{cls_tok} $A {sep_tok}",
        pair=f"{cls_tok} $A {sep_tok} $B:1 {sep_tok}:1",
        special_tokens=[(cls_tok, sp["cls"]), (sep_tok, sp["sep"])])
    tk.decoder = decoders.WordPiece()
    # like HF's BertTokenizer, the special tokens written in a text are matched as such
    specials = [tokens[i] for i in sorted(set(sp.values()))]
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tk


class WordPieceTokenizer:
    """BERT WordPiece tokenizer built from a GGUF model's vocabulary.

    Args:
        model: the opened GGUF model.
        max_tokens: inputs longer than this (special tokens included) are truncated.
    """

    def __init__(self, model: GGUFModel, max_tokens: int | None = None):
        sp = model.special
        tokens = model.tokens
        # built once per vocabulary (keyed by what the build reads), then loaded from the cache
        self._tk = cached_tokenizer(vocab_digest(model), lambda: build_tokenizer(model))
        self.cls_id, self.sep_id, self.pad_id = sp["cls"], sp["sep"], sp["pad"]
        self.vocab_size = len(tokens)
        self.max_tokens = max_tokens or model.config.max_tokens

    def encode(self, text: str, max_tokens: int | None = None) -> Encoding:
        """Token ids of one text, truncated to ``max_tokens`` (keeping the final [SEP])."""
        return self.encode_batch([text], max_tokens)[0]

    def encode_batch(self, texts: list[str], max_tokens: int | None = None) -> list[Encoding]:
        """Token ids of many texts (the tokenizers library runs them in parallel)."""
        limit = max_tokens or self.max_tokens
        out = []
        for enc in self._tk.encode_batch(list(texts), add_special_tokens=True):
            ids = enc.ids
            n = len(ids)
            if n > limit:
                ids = ids[: limit - 1] + [self.sep_id]
            out.append(Encoding(ids, n > limit, n))
        return out

    def count(self, texts: list[str]) -> list[int]:
        """Token counts (special tokens included), untruncated."""
        return [len(e.ids) for e in self._tk.encode_batch(list(texts), add_special_tokens=True)]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each word-piece of ``text`` (no special tokens): used for chunking."""
        return self._tk.encode(text, add_special_tokens=False).offsets

    def decode(self, ids: list[int]) -> str:
        return self._tk.decode(ids)
