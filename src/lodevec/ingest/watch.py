"""Keep an index current while files change (``lodevec watch``, ``mcp/serve --watch``).

``watchfiles`` reports changed paths in debounced batches; each batch becomes one
incremental re-index of just the touched files and folders, with the rules of
``lodevec index``: the same walk (``.gitignore``, skipped folders), only changed chunks
embedded, chunks of vanished or now-ignored files removed.  A folder that appears (moved
in, checked out) is walked whole; one that vanishes takes its files' chunks with it; a
changed ignore file re-walks its folder.  Changes queue up while a batch is indexed and
come back as the next batch, so a burst of thousands of events (a git checkout) costs a
few re-indexes, not one per event.  Events of editors' transient files (``.x.swp``,
``x~``, ``4913``, ``.#x``, a temp file renamed over the real one) are dropped (one that
stays is indexed when its folder is walked, as ``lodevec index`` would), and so are
events under the database's own folder: a database inside the tree causes no feedback
loop.

``Watcher(session, paths).run(stop_event)`` blocks; ``start()`` runs it on a thread and
returns a handle with ``stop()``.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import errors
from .indexer import Indexer, IndexSummary
from .sources import SourceMap
from .walk import SKIP_DIRS, walk_files

#: names of editors' transient files: vim swap/backup/probe, emacs lock/autosave,
#: JetBrains safe-write, gedit/GIO, Kate, Chrome-style swaps, ``*.tmp`` renamed over
_TRANSIENT = re.compile(
    r"(\.sw[a-p]$|~$|^4913$|^\.#|^#.*#$|___jb_(tmp|old)___$|^\.goutputstream-|"
    r"\.kate-swp$|\.crswap$|\.tmp$|\.temp$|\.part$)")
#: a file whose change re-walks its whole folder
_IGNORE_FILES = {".gitignore", ".ignore", ".lodevecignore"}
#: watchfiles batching: a batch is yielded after this long without new events...
DEFAULT_STEP_MS = 200
#: ... or at the latest this long after its first event
DEFAULT_DEBOUNCE_MS = 1500


def is_transient(name: str) -> bool:
    """Whether a file name is an editor's temporary / backup / swap file."""
    return bool(_TRANSIENT.search(name))


class _EventFilter:
    """watchfiles filter: keep events of watched files and of paths under watched
    folders, except under the database folder, under skipped folders (relative to the
    watched root, so a root inside e.g. ``node_modules`` still works) and of transient
    files."""

    def __init__(self, roots: list[Path], excluded: list[Path]):
        self.dirs = [str(r) for r in roots if r.is_dir()]
        self.files = {str(r) for r in roots if not r.is_dir()}
        self.excluded = [str(e) for e in excluded]

    def __call__(self, _change, path: str) -> bool:
        if any(path == e or path.startswith(e + os.sep) for e in self.excluded):
            return False
        if is_transient(os.path.basename(path)):
            return False
        if path in self.files:
            return True
        for r in self.dirs:
            if path.startswith(r + os.sep):
                return not any(part in SKIP_DIRS for part in path[len(r) + 1:].split(os.sep))
        return False


def _watch_targets(roots: list[Path]) -> list[Path]:
    """The folders to watch: folder roots, and a file root's folder (an editor's atomic
    save replaces the file, and a watch on the file itself would die with it; events of
    the folder's other files are filtered out)."""
    dirs = {r if r.is_dir() else r.parent for r in roots}
    return sorted(d for d in dirs if not any(p in dirs for p in d.parents))


def _within(path: Path, targets: set[Path], stop: Path) -> bool:
    """``path`` or one of its parents (up to ``stop``) is in ``targets``."""
    for p in (path, *path.parents):
        if p in targets:
            return True
        if p == stop:
            return False
    return False


class Watcher:
    """Keeps collection ``session.collection`` current for files under ``paths``.

    Args:
        session: a ``lodevec.session.Session`` (collection + embedder).
        paths: files and folders to watch (they must exist).
        chunk_tokens, overlap, batch_size: as for ``Indexer`` (use the values the index
            was made with, or every file is re-embedded once).
        initial: index ``paths`` once before watching (incremental: a current index
            costs a walk and a read of each file).
        lock: held around every write (share one with other writers in the process).
        on_update: called with each batch's ``IndexSummary`` and the touched paths
            (the initial index reports ``None`` as its paths).
        step_ms, debounce_ms: watchfiles batching (see the module constants).
    """

    def __init__(self, session, paths: Iterable[str | os.PathLike], *, chunk_tokens: int = 256,
                 overlap: int = 32, batch_size: int = 256, initial: bool = True,
                 lock: threading.Lock | None = None,
                 on_update: Callable[[IndexSummary, list[str] | None], None] | None = None,
                 step_ms: int = DEFAULT_STEP_MS, debounce_ms: int = DEFAULT_DEBOUNCE_MS):
        self.session = session
        self.roots = []
        for p in paths:
            root = Path(p).expanduser()
            if not root.exists():
                raise errors.InputError(f"{root}: no such file or directory")
            self.roots.append(root.resolve())
        if not self.roots:
            raise errors.InputError("give files or folders to watch")
        self.index_options = {"chunk_tokens": chunk_tokens, "overlap": overlap,
                              "batch_size": batch_size, "dim": session.dim}
        Indexer(session.collection, session.embedder, **self.index_options)  # validates them
        self.initial = initial
        self.lock = lock or threading.Lock()
        self.on_update = on_update
        self.step_ms, self.debounce_ms = step_ms, debounce_ms
        uri = str(session.collection.uri)
        self.db_path = Path(uri).resolve() if "://" not in uri else None
        #: "starting", "indexing", "watching", "stopped" or "failed"
        self.state = "starting"
        self.updates = 0
        self.last_summary: IndexSummary | None = None
        self.last_error: str | None = None
        self.ready = threading.Event()

    # ------------------------------------------------------------------ running
    def run(self, stop_event: threading.Event | None = None) -> None:
        """Watch until ``stop_event`` is set (or, in the main thread, Ctrl-C)."""
        import watchfiles

        stop_event = stop_event or threading.Event()
        flt = _EventFilter(self.roots, [self.db_path] if self.db_path else [])
        started = False
        try:
            for changes in watchfiles.watch(
                    *_watch_targets(self.roots), watch_filter=flt, debounce=self.debounce_ms,
                    step=self.step_ms, stop_event=stop_event, rust_timeout=500,
                    yield_on_timeout=True, raise_interrupt=False):
                if not started:  # the watcher runs: nothing that changes from now is missed
                    started = True
                    if self.initial:
                        self._guarded(None)
                    self.state = "watching"
                    self.ready.set()
                    continue  # the initial index covered this batch's files
                if changes:
                    self._guarded(sorted({p for _, p in changes}))
        except Exception as e:  # the watcher itself failed (a root vanished, inotify limits)
            self.state, self.last_error = "failed", f"watching stopped: {e}"
            raise errors.LodevecError(self.last_error) from e
        finally:
            self.ready.set()
            if self.state != "failed":
                self.state = "stopped"

    def start(self) -> WatchHandle:
        """Run the watcher on a daemon thread; returns its handle."""
        stop = threading.Event()
        thread = threading.Thread(target=self._run_quietly, args=(stop,), name="lodevec-watch",
                                  daemon=True)
        thread.start()
        return WatchHandle(self, thread, stop)

    def _run_quietly(self, stop: threading.Event) -> None:
        try:
            self.run(stop)
        except Exception as e:
            print(f"lodevec watch: {e}", file=sys.stderr, flush=True)

    def _guarded(self, paths: list[str] | None) -> None:
        """One update; a failure is reported and the watcher keeps going (the next
        change retries: every write is idempotent)."""
        self.state = "indexing"
        try:
            summary = self.index_all() if paths is None else self.refresh(paths)
        except (errors.LodevecError, OSError, ValueError) as e:
            self.last_error = str(e)
            print(f"lodevec watch: {e}", file=sys.stderr, flush=True)
            return
        finally:
            self.state = "watching"
        if summary is not None:
            self.updates += 1
            self.last_summary = summary
            if self.on_update:
                self.on_update(summary, paths)

    # ------------------------------------------------------------------ updates
    def _indexer(self) -> Indexer:
        return Indexer(self.session.collection, self.session.embedder, **self.index_options)

    def index_all(self) -> IndexSummary:
        """Index every watched path (incremental, vanished files pruned)."""
        with self.lock:
            summary = self._indexer().index_paths(self.roots, prune=True)
            self.session.collection.maintain()
        return summary

    def refresh(self, changed: Iterable[str | os.PathLike]) -> IndexSummary | None:
        """Re-index what ``changed`` paths touch: files (re)indexed, vanished or now
        ignored ones removed, folders walked whole.  None if that touched no indexed or
        indexable file (e.g. only ignored build output changed)."""
        t0 = time.perf_counter()
        touched = self._touched(changed)
        if not touched:
            return None
        present = self._present(touched)
        coll = self.session.collection
        with self.lock:
            summary = self._index_files(present)
            gone = self._gone(coll.sources(), touched - present, present,
                              SourceMap.for_collection(coll))
            if gone:
                summary.chunks_removed += coll.delete_sources(gone)
            if summary.chunks_embedded or summary.chunks_removed:
                coll.maintain()
        if not present and not gone:
            return None
        summary.seconds = time.perf_counter() - t0
        return summary

    def _touched(self, changed: Iterable[str | os.PathLike]) -> set[Path]:
        out: set[Path] = set()
        for c in changed:
            p = Path(os.path.abspath(c))
            if self.db_path and (p == self.db_path or self.db_path in p.parents):
                continue
            if not any(p == r or r in p.parents for r in self.roots):
                continue
            if p.name in _IGNORE_FILES:
                p = p.parent
            out.add(p)
        # a path under another touched folder adds nothing
        return {p for p in out if not any(q in out for q in p.parents)}

    def _present(self, touched: set[Path]) -> set[Path]:
        """The files under ``touched`` that an index run of the roots would read."""
        present: set[Path] = set()
        for root in self.roots:
            mine = {t for t in touched if t == root or root in t.parents}
            if not mine:
                continue
            if root.is_file() or root in mine:
                present.update(self._walk(root, None))
                continue
            ancestors = {a for t in mine for a in t.parents if a == root or root in a.parents}

            def skip(d: Path, mine=mine, ancestors=ancestors, root=root) -> bool:
                return not (d in ancestors or _within(d, mine, root))

            present.update(f for f in self._walk(root, skip) if _within(f, mine, root))
        return present

    def _walk(self, root: Path, skip: Callable[[Path], bool] | None) -> list[Path]:
        db = self.db_path

        def skipping(d: Path) -> bool:
            return (db is not None and d == db) or (skip is not None and skip(d))

        try:
            return list(walk_files([root], skipping))
        except errors.InputError:  # the root itself vanished
            return []

    def _index_files(self, files: set[Path]) -> IndexSummary:
        """Index ``files``; one that vanishes meanwhile is dropped and the rest retried
        (chunks written by the failed try are not embedded again)."""
        files = sorted(files)
        for _ in range(3):
            files = [f for f in files if f.is_file()]
            if not files:
                return IndexSummary()
            try:
                return self._indexer().index_paths(files, prune=False)
            except errors.InputError:
                continue
        return IndexSummary()

    @staticmethod
    def _gone(stored: set[str], candidates: set[Path], present: set[Path],
              sources: SourceMap | None = None) -> list[str]:
        """Stored sources at or under ``candidates`` (touched paths that are no indexable
        file now: vanished, ignored, or folders), minus the files just indexed."""
        sources = sources or SourceMap(None)
        by_path = {str(sources.path(s)): s for s in stored}  # relative ones made absolute
        ordered = sorted(set(by_path) - {str(p) for p in present})
        out = []
        for c in candidates:
            c = str(c)
            i = bisect.bisect_left(ordered, c)
            while i < len(ordered) and ordered[i].startswith(c):
                s = ordered[i]
                if s == c or s.startswith(c + os.sep):
                    out.append(by_path[s])
                i += 1
        return out


class WatchHandle:
    """A watcher running on a thread."""

    def __init__(self, watcher: Watcher, thread: threading.Thread, stop_event: threading.Event):
        self.watcher = watcher
        self.thread = thread
        self._stop = stop_event

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the initial index; True once the watcher watches."""
        return self.watcher.ready.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and wait (up to ``timeout`` s) for a running update to finish."""
        self._stop.set()
        self.thread.join(timeout)

    def info(self) -> dict:
        w = self.watcher
        return {"paths": [str(r) for r in w.roots], "state": w.state, "updates": w.updates,
                "last_update": w.last_summary.to_dict() if w.last_summary else None,
                "last_error": w.last_error}
