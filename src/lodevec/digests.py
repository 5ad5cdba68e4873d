"""Model file digests, remembered per file so a start-up does not hash the model again.

A table records the sha256 of the model file that wrote it, and every ``search``
checks the model in use against it: hashing a 45-140 MB file costs more than the rest
of a one-shot search.  The digest is kept in ``<cache>/digests/`` (``cache`` is
:func:`lodevec.settings.cache_dir`), one small JSON file per model path, together with
the file's device, inode, size, modification and change times: any write to the file,
a replacement under the same name or a copy elsewhere changes one of them, and the
file is hashed again.  (The change time cannot be set back by a user, so a file edited
and re-dated still misses.)  A cache entry that cannot be read or parsed is ignored
and rewritten; a cache folder that cannot be written just means hashing every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from . import settings

__all__ = ["file_digest", "digest_entry"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def digest_entry(path: str | os.PathLike) -> Path:
    """The cache file that remembers ``path``'s digest (named by its resolved path)."""
    real = os.path.realpath(os.fspath(path))
    name = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return settings.cache_dir() / "digests" / f"{name}.json"


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of the file at ``path``, from the cache when the file is unchanged."""
    path = Path(path)
    st = os.stat(path)
    entry = digest_entry(path)
    real = os.path.realpath(path)
    try:
        rec = json.loads(entry.read_text(encoding="utf-8"))
        if (isinstance(rec, dict) and rec.get("path") == real and rec.get("stat") == _stamp(st)
                and isinstance(rec.get("sha256"), str) and _SHA256_RE.match(rec["sha256"])):
            return rec["sha256"]
    except (OSError, ValueError):  # absent, unreadable or not JSON: hash and rewrite
        pass
    digest = _hash(path)
    if _stamp(os.stat(path)) == _stamp(st):  # not changing under us while we read it
        _write(entry, {"path": real, "stat": _stamp(st), "sha256": digest})
    return digest


def _write(entry: Path, rec: dict) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rec), encoding="utf-8")
        os.replace(tmp, entry)
    except OSError:  # a read-only cache: the digest is still right, only not remembered
        pass
