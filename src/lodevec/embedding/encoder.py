"""The embedding engine, exact to the reference: prompts, tokenizing, length-sorted
batching to a token budget, the backend's forward, Matryoshka, normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import errors, kernels
from ..backends import Backend, create_backend
from ..gguf.model import GGUFModel
from ..settings import DEFAULT_DEVICE
from ..text.prompts import apply_prompt, validate_task
from ..text.tokenizer import WordPieceTokenizer
from .pooling import finish
from .tokenized import Tokenized


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
        threads: compute threads of this encoder's backend (default: the process's,
            ``LODEVEC_NUM_THREADS`` or all cores).
        device: backend name (``"cpu"``; see ``lodevec.backends.DEVICES``).
        max_tokens: truncate inputs to this many tokens (default: the model's maximum,
            a multiple of the trained context for rotary models, the position table otherwise).

    Example:
        >>> enc = Encoder.from_gguf("nomic-embed-text-v1.5.Q4_K_M.gguf")
        >>> enc.embed(["what is rust?"], task="search_query").shape
        (1, 768)
    """

    def __init__(self, model: GGUFModel, threads: int | None = None, device: str = DEFAULT_DEVICE,
                 max_tokens: int | None = None):
        self.model = model
        self.config = model.config
        limit = model.config.max_tokens
        if max_tokens is not None and not 2 <= max_tokens <= limit:
            raise ValueError(f"max_tokens must be in 2..{limit} for {model.path.name}, got {max_tokens}")
        self.max_tokens = max_tokens or limit
        self.tokenizer = WordPieceTokenizer(model, self.max_tokens)
        # the thread count belongs to this encoder's backend, not to the process
        self.backend: Backend = create_backend(model, device, threads=threads)
        self.prompts = dict(model.arch.prompts)

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
        """Valid output dimensions: the full size, plus the architecture's Matryoshka sizes."""
        return (self.dim, *(d for d in self.model.arch.matryoshka_dims if d < self.dim))

    @property
    def info(self) -> dict:
        """Model facts (architecture, sizes, tensor types) plus the encoder's settings."""
        return {**self.model.info(), "dims": list(self.dims), "prompts": self.prompts,
                "max_tokens_used": self.max_tokens, **self.compute}

    @property
    def compute(self) -> dict:
        """What the forward runs on: ``{"device", "isa" (kernel level in use), "int8_dot",
        "openmp", "threads" (this encoder's)}``."""
        k = kernels.kernel_info()
        return {"device": self.backend.device, "isa": k["isa"], "int8_dot": k["int8_dot"],
                "openmp": k["openmp"], "threads": self.backend.threads}

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
    def prompted(self, texts: Sequence[str], task: str) -> list[str]:
        """Texts with the (validated) task's prefix applied, never twice."""
        out = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise errors.TextError(f"text {i} is {type(t).__name__}; expected str")
            out.append(apply_prompt(t, task, self.prompts))
        return out

    def prepare(self, texts: str | Sequence[str], task: str | None = None,
                dim: int | None = None) -> Tokenized:
        """Validate ``task`` and ``dim``, prompt and tokenize once.

        Returns:
            ``Tokenized`` ids ``[CLS] ... [SEP]`` per text, truncated to ``max_tokens``.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        dim = self.check_dim(dim)
        task = validate_task(task)
        encs = self.tokenizer.encode_batch(self.prompted(texts, task))
        return Tokenized(texts, [e.ids for e in encs], [e.n_original for e in encs], task, dim)

    def tokenize(self, texts: str | Sequence[str], task: str | None = None) -> list[list[int]]:
        """Token ids ``[CLS] ... [SEP]`` per text, truncated to ``max_tokens``."""
        return self.prepare(texts, task).ids

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
        _check_batch_size(batch_size)
        return self.encode_tokens(self.prepare(texts, task, dim), batch_size, normalize)

    def encode_tokens(self, tok: Tokenized, batch_size: int = 32,
                      normalize: bool = True) -> EmbeddingResult:
        """Embed texts already prepared by :meth:`prepare` (no second tokenization)."""
        _check_batch_size(batch_size)
        pooled = np.empty((len(tok), self.dim), dtype=np.float32)
        lengths = tok.n_tokens
        for idx in self._batches(lengths, batch_size):
            pooled[idx] = self.backend.forward([tok.ids[i] for i in idx])
        self._check_finite(pooled, tok)
        out = finish(pooled, tok.dim, normalize)
        self._check_finite(out, tok)  # normalising a finite vector can still overflow
        return EmbeddingResult(out, lengths, tok.truncated)

    def _check_finite(self, vectors: np.ndarray, tok: Tokenized) -> None:
        """No NaN or infinity leaves the engine: it would poison every search and JSON."""
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise errors.NonFiniteEmbeddingError(
                self.model.path, f"the model gave a non-finite vector for text {i} "
                f"({tok.texts[i][:40]!r}, {int(bad.sum())} of {len(tok)} texts affected); "
                f"its weights are corrupt or overflow")

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


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
