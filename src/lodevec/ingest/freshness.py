"""Which indexed files changed on disk since they were indexed.

The store keeps no file hash or mtime, only each chunk's text and hash, so a file is
compared with its stored chunks: they are slices of the file's text (``chunk_text``
cuts at token boundaries and strips), found in order and together covering every
non-blank character when the file is unchanged.  That needs neither the tokenizer nor
the chunk size the index was made with.  Work is bounded: files are checked most
recently modified first, up to ``max_files`` and ``budget_s`` seconds.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .sources import SourceMap
from .walk import read_text

#: stored chunks read per lookup (ids per ``get``)
_GROUP_IDS = 1000


@dataclass
class Freshness:
    """The result of :func:`check_freshness`.

    Attributes:
        files: indexed sources that are files (records with other ids are not files).
        checked: files compared with their stored chunks (or found gone).
        stale: ``{"path", "reason"}`` per stale file, most recently modified first
            (reason: ``deleted``, ``modified`` or why the file is no longer indexable).
        complete: every file was checked (no limit or time budget was hit).
    """

    files: int = 0
    checked: int = 0
    stale: list[dict] = field(default_factory=list)
    complete: bool = True

    def to_dict(self, max_listed: int = 100) -> dict:
        return {"files": self.files, "checked": self.checked, "stale_count": len(self.stale),
                "stale": self.stale[:max_listed], "complete": self.complete}


def file_sources(by_source: dict[str, dict[str, str]], sources: SourceMap | None = None
                 ) -> dict[str, list[str]]:
    """``{path: ids}`` for the sources an index run of files wrote: absolute paths (or,
    in a project database, paths relative to the project) whose chunk ids are all
    ``<source>#<n>`` (records carry their callers' ids); keys are absolute paths."""
    out = {}
    for source, ids in by_source.items():
        relative = sources is not None and sources.root is not None
        if source and (os.path.isabs(source) or relative) and all(
                i.startswith(source + "#") and i[len(source) + 1:].isdigit() for i in ids):
            path = str(sources.path(source)) if sources is not None else source
            out[path] = sorted(ids, key=lambda i: int(i[len(source) + 1:]))
    return out


def covered_by(text: str, chunks: list[str]) -> bool:
    """Whether ``chunks`` (in order) are slices of ``text`` that leave only blanks
    uncovered, as the chunks of an unchanged file do."""
    prev_start, covered = -1, 0
    for c in chunks:
        i = text.find(c, prev_start + 1)
        if i < 0 or text[covered:i].strip():
            return False
        covered = max(covered, i + len(c))
        prev_start = i
    return bool(chunks) and not text[covered:].strip()


def check_freshness(collection, *, max_files: int = 1000, budget_s: float = 2.0) -> Freshness:
    """Compare the files indexed in ``collection`` with their current content.

    Args:
        collection: a ``lodevec.store.Collection``.
        max_files: at most this many files are read and compared.
        budget_s: stop comparing after this many seconds (stat calls included).
    """
    t0 = time.perf_counter()
    files = file_sources(collection.hashes_by_source(), SourceMap.for_collection(collection))
    res = Freshness(files=len(files))
    dated: list[tuple[float, str]] = []
    for path in files:
        if time.perf_counter() - t0 > budget_s:
            res.complete = False
            break
        try:
            dated.append((os.stat(path).st_mtime, path))
        except FileNotFoundError:
            res.stale.append({"path": path, "reason": "deleted"})
            res.checked += 1
        except OSError as e:
            res.stale.append({"path": path, "reason": f"cannot read: {e.strerror or e}"})
            res.checked += 1
    dated.sort(reverse=True)
    if len(dated) > max_files:
        dated, res.complete = dated[:max_files], False
    todo = deque(p for _, p in dated)
    while todo:
        group, n = [], 0
        while todo and (not group or n + len(files[todo[0]]) <= _GROUP_IDS):
            group.append(todo.popleft())
            n += len(files[group[-1]])
        texts = {row["id"]: row["text"] for row in collection.get([i for p in group for i in files[p]])}
        for path in group:
            reason = _compare(path, [texts.get(i) for i in files[path]])
            res.checked += 1
            if reason:
                res.stale.append({"path": path, "reason": reason})
        if todo and time.perf_counter() - t0 > budget_s:
            res.complete = False
            break
    return res


def _compare(path: str, chunks: list[str | None]) -> str | None:
    text, why = read_text(Path(path))
    if text is None:
        return "deleted" if not os.path.exists(path) else f"no longer indexable: {why}"
    if any(c is None for c in chunks) or not covered_by(text, chunks):
        return "modified"
    return None

