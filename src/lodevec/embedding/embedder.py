"""The cached embedding facade: an LRU cache in front of the ``Encoder`` that guards the
product's inputs (no empty texts); the store, the CLI and the server all embed through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from .. import errors
from ..settings import DEFAULT_CACHE_ENTRIES, DEFAULT_DEVICE
from ..text.prompts import validate_task
from ..text.validity import is_blank, surrogate_at
from .cache import EmbeddingCache, cache_key
from .encoder import EmbeddingResult, Encoder
from .tokenized import Tokenized

#: one token of ``Embedder.token_details``: ``(id, text, special, start, stop)``
TokenDetail = tuple[int, str, bool, int | None, int | None]


class Embedder:
    """The cached embedding facade used by the store, the CLI and the server.

    Args:
        encoder: the engine.
        cache_size: LRU capacity in entries (0 disables).
        allow_empty: embed empty / whitespace-only texts instead of raising.
        truncate: cut over-long texts (flagged) instead of raising ``TextError``.
    """

    def __init__(self, encoder: Encoder, cache_size: int = DEFAULT_CACHE_ENTRIES,
                 allow_empty: bool = False, truncate: bool = True):
        self.encoder = encoder
        self.cache = EmbeddingCache(cache_size)
        self.allow_empty = allow_empty
        self.truncate = truncate

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, *, threads: int | None = None,
                  device: str = DEFAULT_DEVICE, cache_size: int = DEFAULT_CACHE_ENTRIES,
                  **kwargs) -> Embedder:
        """Open a GGUF file and build the cached facade over an ``Encoder`` on ``device``."""
        return cls(Encoder.from_gguf(path, threads=threads, device=device), cache_size=cache_size,
                   **kwargs)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def model_name(self) -> str:
        """The model file's name."""
        return self.encoder.model.path.name

    @property
    def architecture(self) -> str:
        return self.encoder.config.architecture

    @property
    def dims(self) -> tuple[int, ...]:
        """Valid output dimensions (the full size first)."""
        return self.encoder.dims

    @property
    def compute(self) -> dict:
        """Device, kernel ISA level, int8 dot, OpenMP and threads of the encoder."""
        return self.encoder.compute

    @property
    def max_batch_tokens(self) -> int:
        """Tokens one forward of the backend may hold."""
        return self.encoder.backend.max_batch_tokens

    def check_dim(self, dim: int | None) -> int:
        """``dim`` validated (None: the full size).  Raises ``DimensionError``."""
        return self.encoder.check_dim(dim)

    def warm_up(self) -> None:
        """One uncached forward: pays the one-off costs (weights paged in, thread pools
        started) before the first caller does."""
        self.encoder.encode(["warm up"], "none")

    @property
    def digest(self) -> str:
        """sha256 of the model file: what stores and caches key on."""
        return self.encoder.model.digest

    @property
    def max_tokens(self) -> int:
        """Longest input (special tokens included) before truncation."""
        return self.encoder.max_tokens

    def identity(self, dim: int | None = None) -> dict:
        return self.encoder.identity(dim)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each word piece of ``text`` (no prefix, no special tokens):
        what chunking cuts at."""
        return self.encoder.tokenizer.offsets(text)

    def token_details(self, texts: str | Sequence[str], task: str | None = None,
                      add_special_tokens: bool = True) -> list[tuple[str, list[TokenDetail]]]:
        """Every token of each text as embedded for ``task``, not truncated (what a
        ``/tokenize`` route shows).

        Returns:
            Per text, ``(prompted, tokens)``: the text with its task prefix, and
            ``(id, text, special, start, stop)`` per token, ``start:stop`` being its
            character span in ``prompted`` (``None`` for special tokens, whose text is
            the vocabulary's, e.g. ``[CLS]``).
        """
        texts = self._checked(texts)
        enc = self.encoder
        tk = enc.tokenizer
        prompted = enc.prompted(texts, validate_task(task))
        rows = tk.encode_batch(prompted, sys.maxsize)  # untruncated: every token is listed
        specials = {tk.cls_id, tk.sep_id, tk.pad_id}
        vocab = enc.model.tokens
        out = []
        for text, row in zip(prompted, rows, strict=True):
            # ids are [CLS] + the word pieces + [SEP]; the spans are the word pieces'
            spans = [None, *tk.offsets(text), None]
            tokens: list[TokenDetail] = []
            for tid, span in zip(row.ids, spans, strict=True):
                if tid in specials:
                    if add_special_tokens or span is not None:
                        tokens.append((tid, vocab[tid], True, None, None))
                else:
                    tokens.append((tid, text[span[0]:span[1]], False, span[0], span[1]))
            out.append((text, tokens))
        return out

    def _checked(self, texts: str | Sequence[str]) -> list[str]:
        """The texts as a list, refusing non-strings, lone surrogates and (unless allowed)
        empty texts: blanks and control characters only count as empty."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise errors.TextError(f"text {i} is {type(t).__name__}; expected str")
            if not self.allow_empty and is_blank(t):
                raise errors.TextError(f"text {i} is empty; there is nothing to embed")
            at = surrogate_at(t)
            if at is not None:
                raise errors.TextError(f"text {i} is not valid Unicode: a lone surrogate at "
                                       f"character {at}")
        return texts

    def prepare(self, texts: str | Sequence[str], task: str | None = None,
                dim: int | None = None) -> Tokenized:
        """Validate the texts, task and dimension, prompt and tokenize once (for callers,
        such as the server, that check token counts before embedding)."""
        return self.encoder.prepare(self._checked(texts), task, dim)

    def encode(self, texts: str | Sequence[str], task: str | None = None, dim: int | None = None,
               batch_size: int = 32) -> EmbeddingResult:
        """Like ``Encoder.encode`` (normalised), served from the cache where possible;
        misses are tokenized and computed in one call and stored together."""
        texts = self._checked(texts)
        task = validate_task(task)
        dim = self.encoder.check_dim(dim)
        return self._cached(texts, task, dim, lambda miss: self.encoder.encode(
            [texts[i] for i in miss], task, dim, batch_size))

    def encode_tokens(self, tok: Tokenized, batch_size: int = 32) -> EmbeddingResult:
        """Embed texts from :meth:`prepare`, served from the cache where possible."""
        return self._cached(tok.texts, tok.task, tok.dim, lambda miss: self.encoder.encode_tokens(
            tok.select(miss), batch_size))

    def _cached(self, texts: list[str], task: str, dim: int,
                compute: Callable[[list[int]], EmbeddingResult]) -> EmbeddingResult:
        """Look the texts up in one batch, ``compute`` the misses in one call, store them."""
        if self.cache.max_entries:
            digest = self.encoder.model.digest  # sha256 of the file: computed once, only for the cache
            keys = [cache_key(digest, task, dim, t) for t in texts]
            found = self.cache.get_many(keys)
        else:  # cache disabled: no file hash, no keys
            keys, found = [], [None] * len(texts)
        miss = [i for i, f in enumerate(found) if f is None]
        if miss:
            res = compute(miss)
            if keys:
                self.cache.put_many([(keys[i], (res.embeddings[j], res.n_tokens[j], res.truncated[j]))
                                     for j, i in enumerate(miss)])
            for j, i in enumerate(miss):
                found[i] = (res.embeddings[j], res.n_tokens[j], res.truncated[j])
        out = np.empty((len(texts), dim), dtype=np.float32)
        n_tokens, truncated = [0] * len(texts), [False] * len(texts)
        for i, (vec, n, trunc) in enumerate(found):
            if trunc and not self.truncate:
                raise errors.TextError(
                    f"text {i} is longer than the model's {self.encoder.max_tokens} tokens")
            out[i], n_tokens[i], truncated[i] = vec, n, trunc
        return EmbeddingResult(out, n_tokens, truncated)

    def embed(self, texts: str | Sequence[str], task: str | None = None, dim: int | None = None,
              batch_size: int = 32) -> np.ndarray:
        """Embeddings ``float32 (n, dim)``; a single string gives ``(dim,)``."""
        out = self.encode(texts, task, dim, batch_size).embeddings
        return out[0] if isinstance(texts, str) else out
