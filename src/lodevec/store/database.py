"""The database: a LanceDB connection, and opening, creating and dropping collections.

Opening checks what the table records (:mod:`lodevec.store.identity`): a table written
by a newer lodevec format, or made by another model than the one in use, is refused
with a message that says which.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .. import errors
from ..settings import DEFAULT_COLLECTION, DEFAULT_RESIDENT_BUDGET
from ._lance import is_local, lancedb, local_path
from .identity import check_match, effective_dim, normalize_identity, recorded_identity
from .indexes import IndexPolicy
from .storage import resolve_options

if TYPE_CHECKING:  # pragma: no cover
    from .collection import Collection

__all__ = ["Database"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class Database:
    """A LanceDB database: a local folder (created on first write) or an object-store URI.

    Args:
        uri: folder path, ``file://`` URI or an object-store URI (``s3://...``, ``gs://...``,
            ``az://...``) passed straight to ``lancedb.connect``.
        storage_options: credentials/endpoints for object stores (passed to LanceDB).
        read_consistency_interval: how stale a cached table may be w.r.t. writes by other
            processes.  None -> 0 (check every read, which is cheap) locally, 5 s on
            object stores.
        index_policy: vector index policy for the collections opened from here.
        auto_index: let upserts run :meth:`Collection.maintain` (every ~1000 rows written).
        resident: keep each searched collection's vectors and rows in memory
            (:mod:`lodevec.store.resident`) and answer vector searches from there, several
            times faster than LanceDB's index and far faster than its flat scan.  Loaded
            in a background thread from the second search on (LanceDB answers meanwhile)
            or by :meth:`Collection.load_resident`.  Worth it for processes that search
            many times (the server, an application); a one-shot CLI search turns it off.
        resident_budget: bytes a collection's resident copy may take (estimated from its
            row count as ``rows * (5 * dim + 200)``); larger collections use LanceDB only.
    """

    def __init__(self, uri: str | os.PathLike, *, storage_options: dict | None = None,
                 read_consistency_interval: timedelta | None = None,
                 index_policy: IndexPolicy | None = None, auto_index: bool = True,
                 resident: bool = True, resident_budget: int = DEFAULT_RESIDENT_BUDGET):
        uri = os.fspath(uri)
        if not uri:
            raise errors.InputError("the database path is empty")
        self.local = is_local(uri)
        self.uri = str(local_path(uri)) if self.local else uri
        # env + --storage-option defaults + these, resolved once (lodevec.store.storage)
        self.storage_options = resolve_options(self.uri, storage_options)
        if read_consistency_interval is None:
            read_consistency_interval = timedelta(0) if self.local else timedelta(seconds=5)
        self.read_consistency_interval = read_consistency_interval
        self.index_policy = index_policy or IndexPolicy()
        self.auto_index = auto_index
        self.resident = bool(resident)
        self.resident_budget = int(resident_budget)
        self._conn = None

    def __repr__(self) -> str:
        return f"Database({self.uri!r})"

    # -- connection
    def _connect(self):
        if self._conn is None:
            try:
                self._conn = lancedb().connect(
                    self.uri, read_consistency_interval=self.read_consistency_interval,
                    storage_options=self.storage_options)
            except Exception as e:
                raise errors.StoreError(f"{self.uri}: cannot open the database: {e}") from e
        return self._conn

    def _missing_locally(self) -> bool:
        return self.local and not Path(self.uri).is_dir()

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise errors.InputError(
                f"invalid collection name {name!r}: use letters, digits, '_', '-' and '.' "
                "(at most 128, not starting with '.' or '-')")
        return name

    # -- listing
    def collection_names(self) -> list[str]:
        """Names of the collections (tables) in the database, sorted; [] if it does not exist."""
        if self._missing_locally():
            return []
        if self.local:  # what LanceDB lists: the <name>.lance folders (no import of it)
            return sorted(p.name[:-len(".lance")] for p in Path(self.uri).iterdir()
                          if p.name.endswith(".lance") and p.is_dir())
        conn = self._connect()
        names: list[str] = []
        token = None
        try:
            while True:
                resp = conn.list_tables(page_token=token)
                names.extend(resp.tables)
                token = resp.page_token
                if not token:
                    break
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot list collections: {e}") from e
        return sorted(names)

    def exists(self, name: str = DEFAULT_COLLECTION) -> bool:
        """Whether collection ``name`` exists (never creates anything)."""
        return self._check_name(name) in self.collection_names()

    def stored_identity(self, name: str = DEFAULT_COLLECTION) -> dict | None:
        """The model identity collection ``name`` records, or None if it does not exist
        (never creates anything).  With :func:`lodevec.store.identity.stored_dim` it tells
        which dimension to reopen it with.

        Raises:
            StoreError: the table was not made by lodevec, or by a newer format.
        """
        if not self.exists(name):
            return None
        return recorded_identity(self.uri, name, self.open_table(name).schema.metadata)

    # -- open / create
    def open(self, name: str = DEFAULT_COLLECTION, identity: Mapping | None = None) -> Collection:
        """Open an existing collection.

        Args:
            name: collection name.
            identity: the model identity in use; if given it must match the recorded one
                (digest, architecture, dim) or ModelMismatchError is raised.  None opens
                without a check (``stats``, ``delete``...) and exposes the recorded identity.

        Raises:
            CollectionNotFoundError: the database or the collection does not exist.
            ModelMismatchError: ``identity`` differs from the recorded model.
            StoreError: the table was written by a newer lodevec format.
        """
        self._check_name(name)
        given = normalize_identity(identity) if identity is not None else None
        if self._missing_locally():
            raise errors.CollectionNotFoundError(
                f"{self.uri}: no database here (index something first, or check --db)")
        table = self.open_table(name)
        return self._collection(name, table, given)

    def create_or_open(self, name: str = DEFAULT_COLLECTION, identity: Mapping | None = None
                       ) -> Collection:
        """Open collection ``name``, creating it (and the database) with ``identity`` if needed.

        Raises:
            ModelMismatchError: the existing collection was made with another model.
        """
        from .records import table_schema

        self._check_name(name)
        if identity is None:
            raise errors.InputError("create_or_open needs the model identity")
        given = normalize_identity(identity)
        if self.local:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        schema = table_schema(effective_dim(given), given)
        table = None
        for attempt in range(6):
            try:
                table = self.open_table(name)
                break
            except errors.CollectionNotFoundError:
                pass
            try:
                table = conn.create_table(name, schema=schema)
                break
            except Exception as e:  # a concurrent creator won the race: open its table
                if attempt == 5:
                    raise errors.StoreError(
                        f"{self.uri}: cannot create collection {name!r}: {e}") from e
                time.sleep(0.05 * (attempt + 1))
        coll = self._collection(name, table, given)
        coll._indexes.ensure_scalar()
        return coll

    def open_table(self, name: str):
        """The LanceDB table of collection ``name`` (a new handle; no lodevec checks).

        Locally it is a :class:`~lodevec.store._direct.DirectTable`: reads go through
        ``lance`` and LanceDB is imported only for the first call that needs it (a
        write, full-text search), so a one-shot ``search`` or ``stats`` never pays
        LanceDB's import (see docs/performance.md, "Start-up").
        """
        if self.local and not self.storage_options:
            path = Path(self.uri) / f"{name}.lance"
            if not path.is_dir():
                raise errors.CollectionNotFoundError(
                    f"{self.uri}: collection {name!r} does not exist "
                    f"(collections: {', '.join(self.collection_names()) or 'none'})")
            from ._direct import DirectTable

            try:
                return DirectTable(str(path), lambda: self._open_lancedb_table(name),
                                   self.read_consistency_interval)
            except Exception:  # not a dataset lance reads: LanceDB says what is wrong
                pass
        return self._open_lancedb_table(name)

    def _open_lancedb_table(self, name: str):
        conn = self._connect()
        try:
            return conn.open_table(name)
        except ValueError as e:
            if "not found" in str(e).lower() or "does not exist" in str(e).lower():
                raise errors.CollectionNotFoundError(
                    f"{self.uri}: collection {name!r} does not exist "
                    f"(collections: {', '.join(self.collection_names()) or 'none'})") from None
            raise errors.StoreError(f"{self.uri}: cannot open collection {name!r}: {e}") from e
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot open collection {name!r}: {e}") from e

    def _collection(self, name: str, table, given: dict | None) -> Collection:
        from .collection import Collection

        stored = recorded_identity(self.uri, name, table.schema.metadata)
        check_match(self.uri, name, stored, given)
        return Collection(self, table, name, stored)

    def drop(self, name: str) -> None:
        """Delete collection ``name`` and its files.

        Raises:
            CollectionNotFoundError: it does not exist.
        """
        if not self.exists(name):
            raise errors.CollectionNotFoundError(f"{self.uri}: collection {name!r} does not exist")
        try:
            self._connect().drop_table(name)
        except Exception as e:
            raise errors.StoreError(f"{self.uri}: cannot drop collection {name!r}: {e}") from e
