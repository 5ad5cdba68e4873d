"""What the MCP tools do, as plain library calls on one open session.

Each method takes the tool's arguments and returns a JSON-ready dict, or raises a
``LodevecError`` whose message the server passes on as the tool error.  Paths given by
the agent may be relative: they are resolved against ``cwd`` (the server's working
directory unless given), as the stored sources are absolute.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from .. import errors

#: most results one search returns
MAX_K = 100
#: characters of a result's text shown as its snippet
SNIPPET_CHARS = 320
#: LIKE's escape character in the filters built here
_ESC = "\\"
SEARCH_MODES = ("vector", "hybrid", "fts")


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _like_literal(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (``ESCAPE '\\'``)."""
    return text.replace(_ESC, _ESC * 2).replace("%", _ESC + "%").replace("_", _ESC + "_")


class PathPattern:
    """A path prefix or glob an agent gives to narrow a search or a listing.

    * no ``*``/``?``: the file itself or anything under that folder;
    * a glob without ``/`` (``*.md``): file names matching it, in any folder;
    * a glob with ``/`` (``src/**/*.py``): whole paths, relative to ``cwd``
      (``*`` and ``**`` both match across folders; ``?`` one character).

    ``where()`` renders it as a SQL clause on ``source`` (quoted, LIKE-escaped),
    ``matches()`` tests a path in Python; both mean the same.
    """

    def __init__(self, pattern: str, cwd: str | os.PathLike, root: Path | None = None):
        self.root = root  # a project database stores paths below it relative to it
        pattern = pattern.strip()
        if not pattern:
            raise errors.InputError("path filter is empty")
        self.prefix: str | None = None
        self.tokens: list[str] = []  # "*", "?" or one literal character
        if not any(c in pattern for c in "*?"):
            self.prefix = str(Path(cwd, os.path.expanduser(pattern)).resolve())
            return
        if "/" not in pattern:
            glob = "**/" + pattern
        elif os.path.isabs(pattern):
            glob = os.path.normpath(os.path.expanduser(pattern))
        else:
            glob = os.path.normpath(os.path.join(Path(cwd).resolve(), pattern))
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                self.tokens.append("*")
                i += 3
            else:
                self.tokens.append(glob[i])
                i += 1

    def where(self) -> str:
        clauses = [self._where(self.prefix, self.tokens)]
        rel = self._relative()
        if rel is not None:
            clauses.append(self._where(*rel))
        return clauses[0] if len(clauses) == 1 else "(" + " OR ".join(clauses) + ")"

    def _relative(self):
        """The pattern in the project's relative spelling, when it lies in the project."""
        if self.root is None:
            return None
        base = str(self.root).rstrip(os.sep) + os.sep
        if self.prefix is not None:
            if self.prefix == str(self.root):
                return "", []
            return (self.prefix[len(base):], []) if self.prefix.startswith(base) else None
        if "".join(self.tokens[:len(base)]) == base:
            return None, self.tokens[len(base):]
        if self.tokens[:1] == ["*"]:  # a name glob matches relative paths too
            return None, self.tokens
        return None

    @staticmethod
    def _where(prefix: str | None, tokens: list[str]) -> str:
        if prefix == "":  # the project root itself: every relative source
            return "source NOT LIKE '/%'"
        if prefix is not None:
            under = _like_literal(prefix.rstrip(os.sep)) + os.sep + "%"
            return (f"(source = {sql_string(prefix)} OR "
                    f"source LIKE {sql_string(under)} ESCAPE '{_ESC}')")
        like = "".join("%" if t == "*" else "_" if t == "?" else _like_literal(t) for t in tokens)
        return f"source LIKE {sql_string(like)} ESCAPE '{_ESC}'"

    def matches(self, path: str) -> bool:
        """Whether an absolute ``path`` matches."""
        if self.prefix is not None:
            return path == self.prefix or path.startswith(self.prefix.rstrip(os.sep) + os.sep)
        rx = "".join(".*" if t == "*" else "." if t == "?" else re.escape(t) for t in self.tokens)
        return re.fullmatch(rx, path, flags=re.S) is not None


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The text on one line, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rstrip() + "…"


def _lines(row) -> dict:
    """``line_start``/``line_end`` when the row has them (a column or metadata)."""
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    meta = get("metadata") or {}
    out = {}
    for key in ("line_start", "line_end"):
        value = get(key)
        value = meta.get(key) if value is None else value
        if isinstance(value, int):
            out[key] = value
    return out


class SearchTools:
    """The tools' logic over a ``lodevec.session.Session``.

    Args:
        session: the collection and the embedder (loaded once).
        cwd: what relative paths are relative to (default: the working directory).
        write_lock: held around writes (shared with an in-process watcher).
        chunk_tokens, overlap: chunking of ``index`` (the values the index was made with).
    """

    def __init__(self, session, *, cwd: str | os.PathLike | None = None,
                 write_lock: threading.Lock | None = None, chunk_tokens: int = 256,
                 overlap: int = 32):
        self.session = session
        self.cwd = Path(cwd or os.getcwd())
        self.write_lock = write_lock or threading.Lock()
        self.chunk_tokens, self.overlap = chunk_tokens, overlap
        self.watch = None  # a lodevec.ingest.watch.WatchHandle, when watching

    @property
    def sources(self):
        from ..ingest.sources import SourceMap

        return SourceMap.for_collection(self.collection)

    def _path(self, source: str) -> str:
        """A stored source as the absolute path results carry."""
        return str(self.sources.path(source)) if source else source

    @property
    def collection(self):
        return self.session.collection

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int = 8, mode: str = "vector", path: str | None = None,
               where: str | None = None, full_text: bool = False) -> dict:
        if not isinstance(query, str) or not query.strip():
            raise errors.InputError("query is empty: describe what you are looking for")
        if not 1 <= k <= MAX_K:
            raise errors.InputError(f"k must be between 1 and {MAX_K}, got {k}")
        if mode not in SEARCH_MODES:
            raise errors.InputError(f"unknown mode {mode!r}; use {', '.join(SEARCH_MODES)}")
        clauses = [f"({where})"] if where and where.strip() else []
        if path:
            clauses.append(PathPattern(path, self.cwd, self.sources.root).where())
        t0 = time.perf_counter()
        vector = None if mode == "fts" else self.session.embed_query(query)
        hits = self.collection.search(vector, k=k, where=" AND ".join(clauses) or None,
                                      query_text=query, mode=mode)
        results = []
        for h in hits:
            r = {"path": self._path(h.source), "chunk": h.chunk, **_lines(h), "score": round(float(h.score), 4),
                 "id": h.id, "snippet": snippet(h.text)}
            if full_text:
                r["text"] = h.text
            results.append(r)
        return {"query": query, "mode": mode, "results": results,
                "ms": round((time.perf_counter() - t0) * 1000, 1)}

    # ------------------------------------------------------------------ index
    def index(self, paths: list[str], prune: bool = True) -> dict:
        from ..ingest import Indexer

        if not paths:
            raise errors.InputError("give at least one file or folder to index")
        resolved = [Path(self.cwd, os.path.expanduser(p)).resolve() for p in paths]
        with self.write_lock:
            ix = Indexer(self.collection, self.session.embedder, chunk_tokens=self.chunk_tokens,
                         overlap=self.overlap, dim=self.session.dim)
            summary = ix.index_paths(resolved, prune=prune)
            self.collection.maintain()
        out = summary.to_dict()
        out["skipped"] = out["skipped"][:50]
        out["rows"] = self.collection.count()
        return out

    # ------------------------------------------------------------------ status
    def status(self, check_stale: bool = True, max_files: int = 500) -> dict:
        from ..ingest.freshness import check_freshness

        coll = self.collection
        ident = coll.identity
        out = {"database": str(coll.uri), "collection": coll.name, "rows": coll.count(),
               "sources": len(coll.sources()),
               "model": {"name": ident.get("model"), "architecture": ident.get("architecture"),
                         "dim": coll.dim}}
        if check_stale:
            out["staleness"] = check_freshness(coll, max_files=max_files).to_dict()
        out["watch"] = self.watch.info() if self.watch is not None else None
        return out

    # ------------------------------------------------------------------ sources / get
    def list_sources(self, path: str | None = None, limit: int = 200) -> dict:
        counts = {self._path(s): len(ids) for s, ids in self.collection.hashes_by_source().items()}
        if path:
            pattern = PathPattern(path, self.cwd)
            counts = {s: n for s, n in counts.items() if pattern.matches(s)}
        names = sorted(counts)
        return {"total": len(names), "chunks": sum(counts.values()),
                "sources": [{"path": s, "chunks": counts[s]} for s in names[:max(0, limit)]],
                "truncated": len(names) > limit}

    def get(self, id: str | None = None, path: str | None = None, max_chunks: int = 50) -> dict:
        coll = self.collection
        if bool(id) == bool(path):
            raise errors.InputError("give either id (one chunk) or path (a file's chunks)")
        if id:
            rows = coll.get([id])
            if not rows:
                raise errors.InputError(f"no chunk with id {id!r}")
        else:
            full = Path(self.cwd, os.path.expanduser(path)).resolve()
            source = str(full)
            ids = next((found for form in self.sources.forms(full)
                        if (found := coll.ids_for_source(form))), [])
            if not ids:
                raise errors.InputError(f"{source} is not indexed (see list_sources)")
            rows = coll.get(ids[:max(1, max_chunks)])
        chunks = [{"id": r["id"], "path": self._path(r["source"]), "chunk": r["chunk"], **_lines(r),
                   "text": r["text"]} for r in rows]
        out = {"chunks": chunks}
        if path:
            out["total_chunks"] = len(ids)
            out["truncated"] = len(ids) > len(rows)
        return out

