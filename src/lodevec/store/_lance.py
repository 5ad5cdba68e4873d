"""LanceDB plumbing: the deferred import, one table's calls (retries on commit conflicts,
errors mapped to lodevec's), its write lock, and the word to the resident tier after
each commit of ours.

Nothing here knows what a record or an index is; the modules around it do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import errors

#: the vector column (every module reads the name from here)
VECTOR_COLUMN = "embedding"
#: rows per batch of scalar-column scans
_SCAN_BATCH = 65536
_CONFLICT_RE = re.compile(r"conflict|contention|concurrent|retryable|too many retries", re.I)


def lancedb():
    """The ``lancedb`` module, imported on first use (it is slow to import)."""
    # index statistics without the IVF centroids (the coming default; without this, lance
    # logs a warning to stderr on every index listing)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    import lancedb  # deferred: see docs/performance.md

    return lancedb


def is_conflict(exc: BaseException) -> bool:
    """Whether a LanceDB error is a commit conflict worth retrying."""
    return bool(_CONFLICT_RE.search(str(exc)))


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (files pruned meanwhile are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:  # pruned while we walk
                pass
    return total


#: names of the files a local write stages before renaming them into place (the object
#: store's temporary files): a killed write leaves them, and LanceDB's cleanup never
#: looks at them
_STAGING_RE = re.compile(r"^\.tmp|#\d+$")


def remove_staging_files(table_path: Path) -> int:
    """Delete the staging files under a local table's folder; returns the bytes freed.
    Call with the write lock held: only a write in progress has a staging file of its own."""
    freed = 0
    for root, _dirs, files in os.walk(table_path):
        for f in files:
            if _STAGING_RE.search(f):
                p = os.path.join(root, f)
                try:
                    size = os.stat(p).st_size
                    os.unlink(p)
                except OSError:  # gone meanwhile
                    continue
                freed += size
    return freed


class WriteLock:
    """Serialises the writes of lodevec processes to one collection (re-entrant).

    LanceDB's optimistic commits keep the table consistent by themselves; the lock exists
    for the check-then-append of bulk upserts (no other writer may insert an id between
    the check and the append) and so that two processes never build the same index at
    once.  An ``flock`` on ``<db>/.lodevec-locks/<name>.lock`` for local databases (it
    is released if the process dies); object stores have no lock, and bulk upserts
    there always merge-insert.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @property
    def exclusive(self) -> bool:
        """Whether holding the lock keeps every other lodevec writer out (the flock does;
        no lock does not; :class:`lodevec.store.lease.S3Lease` does across machines)."""
        return self.path is not None

    def fence(self) -> None:
        """Raise if the lock is held but may have passed to another writer (a lease that
        could not be renewed); an flock cannot, so: nothing."""

    def __enter__(self) -> WriteLock:
        self._mutex.acquire()
        if self._depth == 0 and self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                self._mutex.release()
                raise errors.StoreError(f"cannot open the write lock {self.path}: {e}") from e
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._mutex.release()


class Table:
    """One collection's LanceDB table as the store's modules share it.

    Args:
        handle: the opened ``lancedb`` table.
        uri: the database URI (for messages).
        name: the collection name.
        lock_path: the write lock's file (None on object stores: no lock).

    Attributes:
        handle: the LanceDB table.
        lock: the collection's :class:`WriteLock`.
        tier: the resident tier told about our commits (None: no resident copy).
    """

    def __init__(self, handle, uri: str, name: str, lock_path: Path | None):
        self.handle = handle
        self.uri = uri
        self.name = name
        self.lock = WriteLock(lock_path)
        self.tier = None

    def call(self, what: str, fn: Callable[[], Any], *, query: str | None = None,
             retries: int = 8) -> Any:
        """Run a LanceDB call; retry commit conflicts (bounded backoff), map errors."""
        for attempt in range(retries):
            try:
                self.lock.fence()  # a writer that lost its lease writes nothing more
                return fn()
            except errors.LodevecError:
                raise
            except Exception as e:
                if is_conflict(e) and attempt < retries - 1:
                    # jittered exponential backoff: 50 ms, 100 ms, ... capped at 2 s
                    time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                    continue
                if query is not None and isinstance(e, ValueError):
                    raise errors.QueryError(
                        f"{self.uri}: collection {self.name!r}: bad query or filter "
                        f"{query!r}: {e}") from None
                raise errors.StoreError(f"{self.uri}: collection {self.name!r}: {what} failed: {e}") from e
        raise AssertionError("unreachable")

    def version(self) -> int:
        return int(self.handle.version)

    def count(self, where: str | None = None) -> int:
        return int(self.call("count", lambda: self.handle.count_rows(where), query=where))

    def scan(self, columns: list[str], where: str | None = None):
        """``columns`` of the rows matching ``where`` (all rows if None), as an Arrow table."""
        # scalar columns in big batches: LanceDB's default small batches each cross a
        # thread (see docs/performance.md)
        batch = None if VECTOR_COLUMN in columns else _SCAN_BATCH

        def run():
            q = self.handle.search().select(columns)
            if where:
                q = q.where(where)
            return q.limit(None).to_batches(batch_size=batch).read_all()
        return self.call("scan", run, query=where)

    def stats(self) -> dict:
        return self.call("stats", self.handle.stats)

    # -- telling the resident tier about our commits
    def version_if_resident(self) -> int:
        """The version before a write, read only when a snapshot could follow the write
        (saves a version check per small upsert); -1 makes any snapshot go stale."""
        return self.version() if self.tier is not None and self.tier.loaded() else -1

    def advance(self, before: int, result: Any, op: str, payload: Any = None,
                commits: int = 1) -> None:
        """Tell the resident tier about a write of ours that started at version ``before``
        (``result``: LanceDB's result carrying the new version, or None to read it)."""
        if self.tier is None:
            return
        after = getattr(result, "version", None)
        after = self.version() if after is None else int(after)
        self.tier.after_write(before, after, op, payload, commits)

    @contextlib.contextmanager
    def preserving(self, commits: int | None) -> Iterator[None]:
        """A write that changes no rows (index builds), under the write lock: the snapshot
        survives it when it made exactly ``commits`` commits (None: unknown, so the
        snapshot is dropped)."""
        with self.lock:
            before = self.version()
            yield
            if commits is None:
                if self.tier is not None:
                    self.tier.stale()
            else:
                self.advance(before, None, "none", None, commits)


#: the columns a resident copy holds
RESIDENT_COLUMNS = ["id", "text", "source", "chunk", "metadata", VECTOR_COLUMN]


class ResidentSource:
    """A table as the resident tier sees it (:class:`lodevec.store.resident.TableSource`).

    Args:
        table: the collection's :class:`Table`.
        reopen: ``() -> lancedb table``, a second handle on the same table.
        dim: the vector length.
    """

    def __init__(self, table: Table, reopen: Callable[[], Any], dim: int):
        self._t, self._reopen, self._dim = table, reopen, dim

    def load_pinned(self):
        # pinned on a second handle, so commits during the read cannot mix versions
        handle = self._reopen()
        version = int(handle.version)
        handle.checkout(version)
        rows = self._t.call("load resident copy", lambda: handle.search().select(
            RESIDENT_COLUMNS).limit(None).to_arrow())
        return rows, version

    def version(self) -> int:
        return self._t.version()

    def estimate_bytes(self) -> int:
        return self._t.count() * (5 * self._dim + 200)

    def ids_where(self, where: str):
        return self._t.scan(["id"], where)["id"]
