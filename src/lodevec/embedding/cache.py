"""A thread-safe in-memory LRU of embeddings, keyed by a strong hash."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from ..settings import DEFAULT_CACHE_ENTRIES


def cache_key(model_digest: str, task: str, dim: int, text: str) -> bytes:
    """blake2b-128 of (model, task, dim, text); fields are length-framed so no two
    different tuples can produce the same byte string."""
    h = hashlib.blake2b(digest_size=16)
    for part in (model_digest, task, str(dim), text):
        b = part.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


class EmbeddingCache:
    """LRU of ``key -> (vector, n_tokens, truncated)``, bounded by entry count.

    Args:
        max_entries: capacity; 0 disables the cache.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[bytes, tuple[np.ndarray, int, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[bytes]) -> list[tuple[np.ndarray, int, bool] | None]:
        """Look up a whole batch under one lock acquisition."""
        out: list[tuple[np.ndarray, int, bool] | None] = []
        with self._lock:
            for k in keys:
                v = self._data.get(k)
                if v is not None:
                    self._data.move_to_end(k)
                    self.hits += 1
                else:
                    self.misses += 1
                out.append(v)
        return out

    def put_many(self, items: list[tuple[bytes, tuple[np.ndarray, int, bool]]]) -> None:
        """Store many entries; vectors are stored read-only so callers cannot alter them."""
        if not self.max_entries:
            return
        with self._lock:
            for k, (vec, n, trunc) in items:
                vec = np.array(vec, dtype=np.float32, copy=True)
                vec.flags.writeable = False
                self._data[k] = (vec, n, trunc)
                self._data.move_to_end(k)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict:
        return {"entries": len(self._data), "max_entries": self.max_entries,
                "hits": self.hits, "misses": self.misses}
