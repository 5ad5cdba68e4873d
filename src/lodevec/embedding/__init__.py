"""Token ids to vectors users get: the Encoder (engine), pooling, the cache, and the
Embedder (the cached facade the store, CLI and server use)."""

from __future__ import annotations

from .embedder import Embedder
from .encoder import EmbeddingResult, Encoder
from .tokenized import Tokenized

__all__ = ["Embedder", "Encoder", "EmbeddingResult", "Tokenized"]
