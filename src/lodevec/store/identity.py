"""Model identity and table format: what a table records about the model that wrote it.

The caller's identity dict (architecture, model file, digest, dim, prompts...) is stored
as JSON in the table's *schema metadata* (key ``lodevec.identity``), beside the format
version (``lodevec.format``).  Both are part of the manifest that creates the table, so
the table and its identity appear in one atomic commit (no sidecar that can be missing,
stale or half-written, and they travel with the table to object stores).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import errors

__all__ = ["IDENTITY_KEY", "FORMAT_KEY", "FORMAT_VERSION", "effective_dim", "stored_dim",
           "normalize_identity", "describe", "identity_diffs", "recorded_identity",
           "check_match"]

IDENTITY_KEY = "lodevec.identity"
FORMAT_KEY = "lodevec.format"
#: the newest table format this code reads (and the one it writes)
FORMAT_VERSION = "1"


def effective_dim(identity: Mapping) -> int | None:
    """The stored vector length an identity implies: ``matryoshka_dim`` if set, else ``dim``."""
    for key in ("matryoshka_dim", "dim"):
        v = identity.get(key)
        if v is not None and not isinstance(v, bool):
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


def stored_dim(stored: Mapping | None, digest: str | None = None) -> int | None:
    """The dimension a collection keeps, to open it with the same (Matryoshka) size.

    Args:
        stored: the collection's recorded identity (``Database.stored_identity(name)``,
            ``Collection.identity``), or None when it does not exist yet.
        digest: the digest of the model in use; when given and the collection was made
            with another model file, None (that model's own default applies).

    Returns:
        The recorded vector length, or None (no collection, or another model).
    """
    if stored is None:
        return None
    if digest is not None and stored.get("digest") != digest:
        return None
    return effective_dim(stored)


def normalize_identity(identity: Any) -> dict:
    """A copy of the caller's identity, checked: a dict, a positive dim, JSON-serialisable."""
    if not isinstance(identity, Mapping):
        raise errors.InputError(f"a model identity must be a dict, got {type(identity).__name__}")
    ident = dict(identity)
    dim = effective_dim(ident)
    if dim is None or dim <= 0:
        raise errors.DimensionError(f"the model identity has no valid dimension: {ident!r}")
    try:
        json.dumps(ident)
    except (TypeError, ValueError) as e:
        raise errors.InputError(f"the model identity is not JSON-serialisable: {e}") from None
    return ident


def describe(ident: Mapping) -> str:
    """One line naming a model for messages: file, architecture, dim, digest prefix."""
    digest = str(ident.get("digest") or "?")
    return (f"{ident.get('model') or '?'} (architecture={ident.get('architecture') or '?'}, "
            f"dim={effective_dim(ident)}, digest={digest[:16]})")


def identity_diffs(stored: Mapping, given: Mapping) -> list[str]:
    """The fields that make ``given`` another model than ``stored`` (the file name may differ)."""
    diffs = [key for key in ("architecture", "digest")
             if stored.get(key) is not None and given.get(key) is not None
             and stored.get(key) != given.get(key)]
    if effective_dim(stored) != effective_dim(given):
        diffs.append("dim")
    return diffs


def schema_metadata(identity: Mapping) -> dict[str, str]:
    """The schema metadata a new table is created with."""
    return {IDENTITY_KEY: json.dumps(dict(identity), sort_keys=True), FORMAT_KEY: FORMAT_VERSION}


def _check_format(uri: str, name: str, meta: Mapping) -> None:
    raw = meta.get(FORMAT_KEY.encode())
    if raw is None:  # tables written before the key was read carry "1" or nothing
        return
    stored = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        newer = int(stored) > int(FORMAT_VERSION)
    except ValueError:
        newer = True
    if newer:
        raise errors.StoreError(
            f"{uri}: table {name!r} has {FORMAT_KEY} = {stored!r}, but this version of "
            f"lodevec reads format {FORMAT_VERSION} at most; upgrade lodevec to open it")


def recorded_identity(uri: str, name: str, meta: Mapping | None) -> dict:
    """The identity a table records (``meta``: its schema metadata), after checking that
    lodevec made it and that its format is one this code reads."""
    meta = meta or {}
    _check_format(uri, name, meta)
    raw = meta.get(IDENTITY_KEY.encode())
    if raw is None:
        raise errors.StoreError(
            f"{uri}: table {name!r} was not created by lodevec (no model identity)")
    return json.loads(raw)


def check_match(uri: str, name: str, stored: Mapping, given: Mapping | None) -> None:
    """Raise ModelMismatchError when ``given`` (None: no check) is another model."""
    if given is None:
        return
    diffs = identity_diffs(stored, given)
    if diffs:
        raise errors.ModelMismatchError(
            f"{uri}: collection {name!r} was created with model {describe(stored)}, "
            f"but model {describe(given)} is in use ({', '.join(diffs)} differ); "
            "search with the recorded model, or index into another collection or database")
