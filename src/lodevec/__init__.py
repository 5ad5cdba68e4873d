"""lodevec: local semantic search on GGUF embedding models.

>>> from lodevec import Embedder
>>> emb = Embedder.from_gguf("nomic-embed-text-v1.5.Q4_K_M.gguf")
>>> emb.embed("what is rust?", task="search_query").shape
(768,)

Heavy modules (kernels, LanceDB) load on first use, so ``import lodevec`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import InputError, LodevecError

__version__ = "0.1.0"

_LAZY = {
    "Encoder": "embedding", "Embedder": "embedding", "EmbeddingResult": "embedding",
    "GGUFModel": "gguf", "ModelConfig": "gguf",
    "Database": "store", "Collection": "store", "SearchResult": "store",
}

__all__ = [
    "LodevecError", "InputError", "__version__",
    "Encoder", "Embedder", "EmbeddingResult", "GGUFModel", "ModelConfig",
    "Database", "Collection", "SearchResult",
]

if TYPE_CHECKING:  # pragma: no cover
    from .embedding import Embedder, EmbeddingResult, Encoder
    from .gguf import GGUFModel, ModelConfig
    from .store import Collection, Database, SearchResult


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lodevec' has no attribute {name!r}")
