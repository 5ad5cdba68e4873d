"""The store: LanceDB collections with a resident in-memory tier in front.

``Database(uri).create_or_open(name, identity=...)`` is the door.
"""

from __future__ import annotations

from .collection import (
    DEFAULT_COLLECTION,
    RRF_K,
    Collection,
    Database,
    IndexPolicy,
    SearchResult,
    content_hash,
    effective_dim,
    id_index_refresh_after,
)

__all__ = ["Database", "Collection", "SearchResult", "IndexPolicy", "content_hash",
           "effective_dim", "id_index_refresh_after", "DEFAULT_COLLECTION", "RRF_K"]
