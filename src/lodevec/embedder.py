"""Text in, vectors out: the embedding engine and its cached facade.

``Encoder`` is the engine, exact to the reference: prompts, tokenizing, length-sorted
batching to a token budget, the backend's forward, Matryoshka, normalisation.
``Embedder`` puts an LRU cache in front and guards the product's inputs (no empty
texts); the store, the CLI and the server all embed through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import errors, kernels
from .backend import Backend, create_backend
from .cache import EmbeddingCache, cache_key
from .constants import MATRYOSHKA_DIMS
from .gguf_model import GGUFModel
from .pooling import finish
from .prompts import apply_prompt, prompts_for, validate_task
from .tokenizer import WordPieceTokenizer


@dataclass
class EmbeddingResult:
    """Embeddings with per-text token accounting.

    Attributes:
        embeddings: ``float32 (n, dim)``.
        n_tokens: tokens each text used (after truncation, specials included).
        truncated: whether each text was cut to the model's maximum.
    """

    embeddings: np.ndarray
    n_tokens: list[int]
    truncated: list[bool]


class Encoder:
    """Embed texts with a GGUF model.

    Args:
        model: an opened ``GGUFModel``.
        threads: compute threads (default: all available cores).
        device: backend name (``"cpu"``).
        max_tokens: truncate inputs to this many tokens (default: the model's maximum,
            8192 for nomic-bert with NTK rope scaling, the position table for BERT).

    Example:
        >>> enc = Encoder.from_gguf("nomic-embed-text-v1.5.Q4_K_M.gguf")
        >>> enc.embed(["what is rust?"], task="search_query").shape
        (1, 768)
    """

    def __init__(self, model: GGUFModel, threads: int | None = None, device: str = "cpu",
                 max_tokens: int | None = None):
        self.model = model
        self.config = model.config
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            kernels.set_num_threads(threads)
        limit = model.config.max_tokens
        if max_tokens is not None and not 2 <= max_tokens <= limit:
            raise ValueError(f"max_tokens must be in 2..{limit} for {model.path.name}, got {max_tokens}")
        self.max_tokens = max_tokens or limit
        self.tokenizer = WordPieceTokenizer(model, self.max_tokens)
        self.backend: Backend = create_backend(model, device)
        self.prompts = prompts_for(model.config.architecture)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, **kwargs) -> Encoder:
        """Open a GGUF file (see ``GGUFModel.open`` for the errors) and build the encoder."""
        return cls(GGUFModel.open(path), **kwargs)

    # ----------------------------------------------------------------- metadata
    @property
    def dim(self) -> int:
        """Full embedding dimension (hidden size)."""
        return self.config.hidden

    @property
    def dims(self) -> tuple[int, ...]:
        """Valid output dimensions: the full size, plus Matryoshka sizes for nomic."""
        if self.config.architecture != "nomic-bert":
            return (self.dim,)
        return (self.dim, *(d for d in MATRYOSHKA_DIMS if d < self.dim))

    @property
    def info(self) -> dict:
        """Model facts (architecture, sizes, tensor types) plus the encoder's settings."""
        return {**self.model.info(), "dims": list(self.dims), "prompts": self.prompts,
                "max_tokens_used": self.max_tokens, "threads": kernels.get_num_threads(),
                "openmp": kernels.openmp_enabled()}

    def identity(self, dim: int | None = None) -> dict:
        """What a store records to refuse vectors from another model."""
        return {"architecture": self.config.architecture, "model": self.model.path.name,
                "path": str(self.model.path.resolve()), "digest": self.model.digest, "dim": self.check_dim(dim),
                "hidden": self.dim, "prompts": self.prompts}

    def check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.dim
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) not in self.dims:
            raise errors.DimensionError(
                f"dimension {dim!r} is not available for {self.model.path.name}; "
                f"choose one of {', '.join(map(str, self.dims))}")
        return int(dim)

    # ----------------------------------------------------------------- text -> ids
    def prepare(self, texts: Sequence[str], task: str | None) -> list[str]:
        """Texts with the task prefix applied (never twice)."""
        task = validate_task(task)
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise errors.TextError(f"text {i} is {type(t).__name__}; expected str")
            out.append(apply_prompt(t, task, self.prompts))
        return out

    def tokenize(self, texts: str | Sequence[str], task: str | None = None) -> list[list[int]]:
        """Token ids ``[CLS] ... [SEP]`` per text, truncated to ``max_tokens``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return [e.ids for e in self.tokenizer.encode_batch(self.prepare(texts, task))]

    # ----------------------------------------------------------------- embedding
    def encode(self, texts: str | Sequence[str], task: str | None = None, dim: int | None = None,
               batch_size: int = 32, normalize: bool = True) -> EmbeddingResult:
        """Embed texts, with token counts and truncation flags.

        Args:
            texts: one string or many.
            task: ``none`` (default: as given), ``search_query``, ``search_document``,
                ``clustering`` or ``classification`` (nomic prefixes; ignored by
                models without prompts).
            dim: output dimension (see ``dims``).
            batch_size: most texts per forward; batches are also capped by the
                backend's token budget.
            normalize: L2-normalise (default True).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        dim = self.check_dim(dim)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encs = self.tokenizer.encode_batch(self.prepare(texts, task))
        pooled = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in self._batches([len(e.ids) for e in encs], batch_size):
            pooled[idx] = self.backend.forward([encs[i].ids for i in idx])
        return EmbeddingResult(finish(pooled, dim, normalize),
                               [len(e.ids) for e in encs], [e.truncated for e in encs])

    def embed(self, texts: str | Sequence[str], task: str | None = None, dim: int | None = None,
              batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Embeddings ``float32 (n, dim)``; a single string gives ``(dim,)``."""
        out = self.encode(texts, task, dim, batch_size, normalize).embeddings
        return out[0] if isinstance(texts, str) else out

    def _batches(self, lengths: list[int], batch_size: int) -> list[np.ndarray]:
        """Longest first, filled up to ``batch_size`` texts and the token budget."""
        order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
        budget = max(self.backend.max_batch_tokens, max(lengths, default=0))
        batches, cur, tokens = [], [], 0
        for i in order:
            n = lengths[i]
            if cur and (len(cur) >= batch_size or tokens + n > budget):
                batches.append(np.asarray(cur))
                cur, tokens = [], 0
            cur.append(i)
            tokens += n
        if cur:
            batches.append(np.asarray(cur))
        return batches


class Embedder:
    """The cached embedding facade used by the store, the CLI and the server.

    Args:
        encoder: the engine.
        cache_size: LRU capacity in entries (0 disables).
        allow_empty: embed empty / whitespace-only texts instead of raising.
        truncate: cut over-long texts (flagged) instead of raising ``TextError``.
    """

    def __init__(self, encoder: Encoder, cache_size: int = 50_000, allow_empty: bool = False,
                 truncate: bool = True):
        self.encoder = encoder
        self.cache = EmbeddingCache(cache_size)
        self.allow_empty = allow_empty
        self.truncate = truncate

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, *, threads: int | None = None,
                  cache_size: int = 50_000, **kwargs) -> Embedder:
        return cls(Encoder.from_gguf(path, threads=threads), cache_size=cache_size, **kwargs)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def model_path(self) -> Path:
        return self.encoder.model.path

    def identity(self, dim: int | None = None) -> dict:
        return self.encoder.identity(dim)

    def encode(self, texts: str | Sequence[str], task: str | None = None, dim: int | None = None,
               batch_size: int = 32) -> EmbeddingResult:
        """Like ``Encoder.encode`` (normalised), served from the cache where possible;
        misses are computed in one call and stored together."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        task = validate_task(task)
        dim = self.encoder.check_dim(dim)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise errors.TextError(f"text {i} is {type(t).__name__}; expected str")
            if not self.allow_empty and not t.strip():
                raise errors.TextError(f"text {i} is empty; there is nothing to embed")
        if self.cache.max_entries:
            digest = self.encoder.model.digest  # sha256 of the file: computed once, only for the cache
            keys = [cache_key(digest, task, dim, t) for t in texts]
            found = self.cache.get_many(keys)
        else:  # cache disabled: no file hash, no keys
            keys, found = [], [None] * len(texts)
        miss = [i for i, f in enumerate(found) if f is None]
        out = np.empty((len(texts), dim), dtype=np.float32)
        n_tokens, truncated = [0] * len(texts), [False] * len(texts)
        if miss:
            res = self.encoder.encode([texts[i] for i in miss], task, dim, batch_size)
            if keys:
                self.cache.put_many([(keys[i], (res.embeddings[j], res.n_tokens[j], res.truncated[j]))
                                     for j, i in enumerate(miss)])
            for j, i in enumerate(miss):
                found[i] = (res.embeddings[j], res.n_tokens[j], res.truncated[j])
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
