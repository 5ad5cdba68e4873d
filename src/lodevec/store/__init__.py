"""The store: LanceDB collections with a resident in-memory tier in front.

``Database(uri).create_or_open(name, identity=...)`` is the door.  One module per job:

* :mod:`~lodevec.store.database` -- ``Database``: connect, open / create / drop, names;
* :mod:`~lodevec.store.identity` -- the model identity and format a table records;
* :mod:`~lodevec.store.records` -- the one record validator and the Arrow rows;
* :mod:`~lodevec.store.writes` -- the upsert strategy and deletes;
* :mod:`~lodevec.store.indexes` -- the vector index kinds, ``IndexPolicy``, maintenance;
* :mod:`~lodevec.store.query` -- search (vector, FTS, hybrid RRF) and lookups;
* :mod:`~lodevec.store.resident` -- the in-memory tier behind a narrow interface;
* :mod:`~lodevec.store._lance` -- LanceDB plumbing: import, retries, errors, write lock;
* :mod:`~lodevec.store.collection` -- ``Collection``, the facade composing them.

Names load on first use: ``lodevec.store.indexes`` (the index kinds the CLI lists at
start) does not import pyarrow or LanceDB.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..settings import DEFAULT_COLLECTION

_LAZY = {
    "Database": "database", "Collection": "collection", "SearchResult": "query",
    "RRF_K": "query", "IndexPolicy": "indexes", "KIND_NAMES": "indexes",
    "id_index_refresh_after": "indexes", "content_hash": "validation",
    "validate_record": "validation", "effective_dim": "identity", "stored_dim": "identity",
}

__all__ = ["Database", "Collection", "SearchResult", "IndexPolicy", "content_hash",
           "effective_dim", "id_index_refresh_after", "DEFAULT_COLLECTION", "RRF_K",
           "KIND_NAMES", "validate_record", "stored_dim"]

if TYPE_CHECKING:  # pragma: no cover
    from .collection import Collection
    from .database import Database
    from .identity import effective_dim, stored_dim
    from .indexes import KIND_NAMES, IndexPolicy, id_index_refresh_after
    from .query import RRF_K, SearchResult
    from .validation import content_hash, validate_record


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lodevec.store' has no attribute {name!r}")
