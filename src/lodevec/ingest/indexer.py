"""Folders and files -> token-sized chunks -> embeddings -> the store, incrementally.

A chunk's id is ``<source>#<chunk index>``; its metadata records where it is in the
file (``line_start``/``line_end``, 1-based and inclusive, and ``byte_start``/
``byte_end``, a half-open range of the file's bytes), and its ``content_hash`` is the
sha256 of its text and that position, so re-indexing embeds only chunks that changed
or moved (a moved chunk's line numbers must change), removes chunks of files that
shrank or vanished, and an interrupted run is finished by running it again: every
write is an idempotent upsert by id.  Sources are spelled as
:mod:`lodevec.ingest.sources` says (relative inside a project database).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import errors
from ..store.validation import Voice, content_hash, validate_record
from ..text.chunking import chunk_spans
from .sources import SourceMap
from .walk import Selection, absolute, read_file, walk_files

#: how ``index --input`` words a bad record (``file: record 3 (id x): ...``); source and
#: chunk problems keep the store's words
RECORDS_VOICE = Voice(not_object="{w}: expected a JSON object",
                      bad_id='{w}: "id" is missing; expected a string or integer',
                      wrong_id='{w}: "id" is a {type}, not a string or integer',
                      bad_unicode='{w}: "{e}" is not valid Unicode (a lone surrogate)',
                      bad_text='{w} (id {rid}): "text" is missing or empty',
                      bad_metadata='{w} (id {rid}): "metadata" must be an object',
                      bad_metadata_value="{w} (id {rid}): metadata is not JSON: {e}")


@dataclass
class IndexSummary:
    """What an index run did (printed by ``lodevec index --json``)."""

    files: int = 0
    files_unchanged: int = 0
    chunks: int = 0
    chunks_embedded: int = 0
    chunks_skipped: int = 0
    chunks_removed: int = 0
    tokens: int = 0
    truncated: int = 0
    skipped: list[dict] = field(default_factory=list)
    #: stored sources removed because their file vanished or is no longer selected
    pruned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tokens_per_s"] = round(self.tokens / self.seconds, 1) if self.seconds else 0.0
        d["seconds"] = round(self.seconds, 3)
        return d


#: characters of planned chunk text kept between planning and embedding (see _plan_all)
PLAN_BUDGET_CHARS = 64 << 20


@dataclass(frozen=True)
class FilePlan:
    """One file read and chunked: ``chunks`` None when it is skipped (``reason``)."""

    source: str
    chunks: list | None
    reason: str | None
    to_embed: int


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str
    chunk: int
    metadata: dict
    content_hash: str


def record_chunks(records: Iterable[dict], source: str = "<records>",
                  labels: Iterable[str] | None = None) -> list[Chunk]:
    """Every record checked by the store's validator (``RECORDS_VOICE``) and ids unique,
    before anything is written: one row each.

    Args:
        records: ``{"id", "text", "metadata"?}`` dicts.
        source: the file they came from (the default ``source`` of a record).
        labels: how messages name each record (e.g. ``notes.jsonl:12``, its line);
            default ``source: record N``.

    Raises:
        RecordError: the first bad record, or an id given twice.
    """
    chunks = []
    names = iter(labels) if labels is not None else None
    for n, rec in enumerate(records, 1):
        label = next(names) if names is not None else f"{source}: record {n}"
        r = validate_record(rec, label=label, voice=RECORDS_VOICE, default_source=source)
        chunks.append(Chunk(r["id"], r["text"], r["source"], 0, r["metadata"], r["content_hash"]))
    seen: set[str] = set()
    for c in chunks:
        if c.id in seen:
            raise errors.RecordError(f"{source}: id {c.id!r} appears more than once")
        seen.add(c.id)
    return chunks


#: characters tokenized at once when chunking a file (a chunk never spans two windows)
WINDOW_CHARS = 1 << 16


def positions(text: str, spans: list[tuple[int, int]], encoding: str = "utf-8"
              ) -> list[dict]:
    """``line_start``, ``line_end`` (1-based, inclusive) and ``byte_start``, ``byte_end``
    (half-open, in the file's own encoding, a BOM counted) of each character span."""
    import bisect

    newlines, i = [], text.find("\n")
    while i != -1:
        newlines.append(i)
        i = text.find("\n", i + 1)
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    bom = 3 if encoding == "utf-8-sig" else 0
    points = sorted({p for span in spans for p in span})
    to_byte, at, nbytes = {}, 0, bom
    for p in points:  # one encode of the text in total, however chunks overlap
        nbytes += len(text[at:p].encode(codec, errors="replace"))
        to_byte[p], at = nbytes, p
    return [{"line_start": bisect.bisect_left(newlines, a) + 1,
             "line_end": bisect.bisect_left(newlines, max(a, b - 1)) + 1,
             "byte_start": to_byte[a], "byte_end": to_byte[b]} for a, b in spans]


def position_hash(text: str, pos: dict) -> str:
    """What tells an unchanged file chunk: its text at the same place."""
    return content_hash(f"{pos['line_start']}:{pos['line_end']}:{pos['byte_start']}:"
                        f"{pos['byte_end']}\n{text}")


def text_windows(text: str, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` spans of at most ``size`` characters covering ``text``, each cut
    after the last paragraph break, else line break, else blank in its second half (a
    hard cut only in a text without any)."""
    spans, a, n = [], 0, len(text)
    while n - a > size:
        b = a + size
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, a + size // 2, b)
            if cut != -1:
                b = cut + len(sep)
                break
        spans.append((a, b))
        a = b
    spans.append((a, n))
    return spans


# ---------------------------------------------------------------------- walking
class Indexer:
    """Index files or records into a collection through the cached embedder.

    Args:
        collection: a ``lodevec.store.Collection`` opened with the embedder's identity.
        embedder: a ``lodevec.embedding.Embedder``.
        chunk_tokens: word pieces per chunk (prefix and specials not counted).
        overlap: word pieces shared by consecutive chunks.
        batch_size: chunks embedded and written per batch.
        progress: a callable ``(files, chunks, tokens)`` called as work completes.
        dim: the Matryoshka size to embed at (None: the model's).
        select: which files of walked folders (hidden, globs, types; see ``walk``).
        on_read: ``(files read, files total)`` while files are read and chunked.
        on_plan: ``(files, chunks to embed)`` once every file is chunked, before embedding.
    """

    def __init__(self, collection, embedder, chunk_tokens: int = 256, overlap: int = 32,
                 batch_size: int = 256, progress: Callable[[int, int, int], None] | None = None,
                 dim: int | None = None, select: Selection | None = None,
                 on_read: Callable[[int, int], None] | None = None,
                 on_plan: Callable[[int, int], None] | None = None):
        if chunk_tokens < 8:
            raise ValueError(f"chunk_tokens must be >= 8, got {chunk_tokens}")
        if not 0 <= overlap < chunk_tokens:
            raise ValueError(f"overlap must be in 0..{chunk_tokens - 1}, got {overlap}")
        limit = embedder.max_tokens - 16  # room for [CLS], [SEP] and the task prefix
        if chunk_tokens > limit:
            raise ValueError(f"chunk_tokens must be <= {limit} for this model, got {chunk_tokens}")
        self.collection = collection
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.batch_size = batch_size
        self.progress = progress
        self.dim = dim
        self.select = select
        self.on_read, self.on_plan = on_read, on_plan
        self.sources = SourceMap.for_collection(collection)
        self._pending: list[Chunk] = []
        self._stored: dict[str, dict[str, str]] = {}
        self.summary = IndexSummary()

    # -- files
    def index_paths(self, paths: Iterable[str | os.PathLike], prune: bool = True,
                    follow_symlinks: bool = False) -> IndexSummary:
        """Index files and folders; with ``prune``, chunks of files under ``paths`` that no
        longer exist or are no longer reachable (ignored, skipped, a removed link) are
        removed.  Links out of a folder are followed only with ``follow_symlinks`` (and
        never into /proc, /sys or /dev); see ``lodevec.ingest.walk``."""
        t0 = time.perf_counter()
        paths = list(paths)
        db_path = Path(str(self.collection.uri)).resolve() if "://" not in str(self.collection.uri) else None
        skip = (lambda p: p.resolve() == db_path) if db_path else None
        seen: set[str] = set()
        self._stored = self.collection.hashes_by_source()  # one scan, not one query per file
        def skipped(path: str, reason: str) -> None:
            self.summary.skipped.append({"path": path, "reason": reason})

        files = self.files(paths, skip, follow_symlinks, skipped)
        plans = self._plan_all(files)
        for f, plan in zip(files, plans, strict=True):
            plan = plan or self.plan_file(f)  # planned without its text (over the budget)
            seen.add(plan.source)
            self.apply(plan)
        walked = {str(self.sources.path(s)) for s in seen}
        legacy = [s for s in self._stored if s not in seen and str(self.sources.path(s)) in walked]
        if legacy:  # absolute rows of files now stored relative (written before projects)
            self.summary.chunks_removed += self.collection.delete_sources(legacy)
        if prune:
            roots = [absolute(p) for p in paths]
            gone = [s for s in self._stored
                    if s not in seen and s not in legacy and self.sources.under(s, roots)]
            if gone:
                self.summary.chunks_removed += self.collection.delete_sources(gone)
                self.summary.pruned += sorted(gone)
        self.flush()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def files(self, paths, skip=None, follow_symlinks: bool = False, on_skip=None) -> list[Path]:
        """The files an index run of ``paths`` reads (walked once, so a progress bar knows
        its total before any work)."""
        return list(walk_files(paths, skip, follow_symlinks=follow_symlinks, on_skip=on_skip,
                               select=self.select))

    def plan_file(self, f: Path) -> FilePlan:
        """Read and chunk one file, and count the chunks that need embedding."""
        source = self.sources.source(f)
        text, reason, encoding = read_file(f)
        if text is None:
            return FilePlan(source, None, reason, 0)
        spans = self._spans(text)
        meta = {"path": source}
        if encoding not in ("utf-8", "utf-8-sig"):
            meta["encoding"] = encoding
        chunks = []
        for i, ((a, b), pos) in enumerate(zip(spans, positions(text, spans, encoding), strict=True)):
            t = text[a:b]
            chunks.append(Chunk(f"{source}#{i}", t, source, i, {**meta, **pos}, position_hash(t, pos)))
        stored = self._stored.get(source, {})
        return FilePlan(source, chunks, None, sum(stored.get(c.id) != c.content_hash for c in chunks))

    def apply(self, plan: FilePlan) -> None:
        """Queue a planned file's changed chunks (its vanished ones deleted)."""
        self.summary.files += 1
        if plan.chunks is None:
            self.summary.skipped.append({"path": plan.source, "reason": plan.reason})
            if self._stored.get(plan.source):
                self.summary.chunks_removed += self.collection.delete_sources([plan.source])
            self._tick()
            return
        self._add_source(plan.source, plan.chunks)

    # -- records
    def index_records(self, records: Iterable[dict], source: str = "<records>",
                      labels: Iterable[str] | None = None) -> IndexSummary:
        """Index ``{"id", "text", "metadata"?}`` records, one row each (all records are
        validated before anything is written; see ``record_chunks``)."""
        return self.index_chunks(record_chunks(records, source, labels))

    def index_chunks(self, chunks: list[Chunk]) -> IndexSummary:
        """Index chunks already checked by ``record_chunks``."""
        t0 = time.perf_counter()
        ids = [c.id for c in chunks]
        self._queue_changed(chunks, self.collection.hashes_for_ids(ids) if chunks else {})
        self.flush()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    # -- internals
    def _plan_all(self, files: list[Path]) -> list[FilePlan | None]:
        """Every file read and chunked before anything is embedded, so progress has its
        totals; plans beyond ``PLAN_BUDGET_CHARS`` of text are counted, then dropped and
        made again when their turn comes (memory stays bounded on huge trees)."""
        plans: list[FilePlan | None] = []
        kept, todo = 0, 0
        for n, f in enumerate(files, 1):
            plan = self.plan_file(f)
            todo += plan.to_embed
            size = sum(len(c.text) for c in plan.chunks or ())
            kept += size
            plans.append(plan if kept <= PLAN_BUDGET_CHARS else None)
            if self.on_read:
                self.on_read(n, len(files))
        if self.on_plan:
            self.on_plan(len(files), todo)
        return plans

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """The chunks of one file's text as character spans, tokenized a window at a time:
        the tokenizer's record of a whole large file (ids, strings and spans per piece)
        would take many times the file's size."""
        if len(text) <= WINDOW_CHARS:
            return chunk_spans(text, self.embedder.token_spans(text), self.chunk_tokens, self.overlap)
        out: list[tuple[int, int]] = []
        for a, b in text_windows(text, WINDOW_CHARS):
            part = text[a:b]
            out += [(a + x, a + y) for x, y in
                    chunk_spans(part, self.embedder.token_spans(part), self.chunk_tokens, self.overlap)]
        return out

    def _add_source(self, source: str, chunks: list[Chunk]) -> None:
        stored = self._stored.get(source, {})  # id -> content_hash
        new_ids = {c.id for c in chunks}
        stale = [i for i in stored if i not in new_ids]
        unchanged = all(stored.get(c.id) == c.content_hash for c in chunks) and not stale
        if unchanged:
            self.summary.files_unchanged += 1
        self._queue_changed(chunks, stored)
        if stale:
            self.summary.chunks_removed += self.collection.delete(ids=stale)
        self._tick()

    def _queue_changed(self, chunks: list[Chunk], stored: dict[str, str]) -> None:
        """Queue the chunks whose text is not already stored under their id."""
        for c in chunks:
            self.summary.chunks += 1
            if stored.get(c.id) == c.content_hash:
                self.summary.chunks_skipped += 1
            else:
                self._queue(c)

    def _queue(self, c: Chunk) -> None:
        self._pending.append(c)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Embed the queued chunks and write them in one upsert."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        res = self.embedder.encode([c.text for c in batch], task="search_document", dim=self.dim)
        self.collection.upsert([
            {"id": c.id, "text": c.text, "source": c.source, "chunk": c.chunk, "metadata": c.metadata,
             "content_hash": c.content_hash, "embedding": vec}
            for c, vec in zip(batch, res.embeddings, strict=True)])
        self.summary.chunks_embedded += len(batch)
        self.summary.tokens += sum(res.n_tokens)
        self.summary.truncated += sum(res.truncated)
        self._tick()

    def _tick(self) -> None:
        if self.progress:
            self.progress(self.summary.files, self.summary.chunks_embedded, self.summary.tokens)
