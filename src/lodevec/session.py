"""Open a collection together with the model it was made with.

A table records the model that wrote it (its identity: file name, path, digest, dim).
A caller that names no model gets that one back; a caller that names the same model
keeps the table's Matryoshka size; any other model is refused by the store with a
``ModelMismatchError``.  The CLI, the server and (next) the MCP server all open
collections here, so the rule is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import errors
from .settings import DEFAULT_CACHE_ENTRIES, DEFAULT_COLLECTION, DEFAULT_DEVICE


@dataclass
class Session:
    """A collection and the embedder whose vectors it holds."""

    collection: object  # lodevec.store.Collection
    embedder: object    # lodevec.embedding.Embedder

    @property
    def dim(self) -> int | None:
        """The dimension to embed queries at: None for the model's full size."""
        return None if self.collection.dim == self.embedder.dim else self.collection.dim

    def embed_query(self, text: str):
        """The query vector, as the table's rows were embedded (``search_query`` task)."""
        return self.embedder.embed(text, task="search_query", dim=self.dim)


def recorded_model(identity: dict) -> str | Path:
    """The model file recorded with a table: its path if it still exists, else its name
    looked up in the model cache.

    Raises:
        ModelNotFoundError: neither is there.
    """
    path = identity.get("path")
    if path and Path(path).exists():
        return path
    from .hub import cached_models

    for p in cached_models():
        if p.name == identity.get("model"):
            return p
    raise errors.ModelNotFoundError(
        f"the collection was made with {identity.get('model')!r}, which is neither at "
        f"{path!r} nor in the model cache; pass --model FILE")


def stored_identity(db, name: str, *, required: bool) -> dict | None:
    """The identity recorded with collection ``name`` (None if there is no such
    collection and it is not ``required``: then ``CollectionNotFoundError``)."""
    return db.open(name).identity if required else db.stored_identity(name)


def model_for(db, name: str, model: str | os.PathLike | None) -> str | os.PathLike | None:
    """``model`` if given, else the one recorded with an existing collection, else None
    (the model cache decides)."""
    stored = None if model is not None or db is None else db.stored_identity(name)
    return model if stored is None else recorded_model(stored)


def collection_for(db, name: str, embedder, *, dim: int | None = None, create: bool,
                   stored: dict | None = None):
    """Open (or with ``create``, create) collection ``name`` for ``embedder``'s vectors;
    with no ``dim``, the same model keeps the table's Matryoshka size.

    Raises:
        CollectionNotFoundError: it does not exist and ``create`` is False.
        ModelMismatchError: it holds another model's vectors.
    """
    from .store import stored_dim

    if stored is None:
        stored = stored_identity(db, name, required=not create)
    if dim is None:
        dim = stored_dim(stored, embedder.digest)
    identity = embedder.identity(dim)
    return db.create_or_open(name, identity=identity) if create else db.open(name, identity=identity)


def open_session(db, name: str = DEFAULT_COLLECTION, *, model: str | os.PathLike | None = None,
                 create: bool = False, dim: int | None = None, threads: int | None = None,
                 device: str = DEFAULT_DEVICE, cache_size: int = DEFAULT_CACHE_ENTRIES) -> Session:
    """Open collection ``name`` of ``db`` (a ``lodevec.store.Database``) with the model it
    was made with (or ``model``), loading that model once.

    Raises:
        CollectionNotFoundError, ModelMismatchError, ModelNotFoundError, ModelFileError.
    """
    from .embedding import Embedder
    from .hub import resolve_model

    stored = stored_identity(db, name, required=not create)
    if model is None and stored is not None:
        model = recorded_model(stored)
    emb = Embedder.from_gguf(resolve_model(model), threads=threads, device=device,
                             cache_size=cache_size)
    return Session(collection_for(db, name, emb, dim=dim, create=create, stored=stored), emb)
