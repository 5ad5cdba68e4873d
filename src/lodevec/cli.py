"""The ``lodevec`` command: parses arguments, calls the library, prints.

``main(argv) -> int`` is what tests call.  Library errors become one line
``error: ...`` on stderr: exit 2 for bad input (files, arguments, lines), 1 for other
failures; ``--debug`` shows tracebacks.  ``search`` exits 1 when nothing matched, as
grep does, and a reader that goes away (``| head -1``) ends any command quietly with 0.

Only the standard library (and lodevec's stdlib-only modules) is imported at the top
and while the parser is built: a command's heavy imports happen inside it, and a
subcommand's options are added only when that subcommand runs, so ``lodevec --help``
never imports numpy, LanceDB or the HTTP stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import errors
from .console import output
from .console.pipes import read_query, silence_stdout
from .console.project import resolve_db
from .settings import DEFAULT_CACHE_ENTRIES, DEFAULT_COLLECTION, DEFAULT_DEVICE

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


# ------------------------------------------------------------------------ helpers
def _ints(s: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def _levels(s: str) -> list[str]:
    from .kernels import isa

    if s.strip() == "all":
        return list(isa.supported_levels())
    levels = [x.strip() for x in s.split(",") if x.strip()]
    if not levels:
        raise argparse.ArgumentTypeError("expected ISA levels, e.g. avx512,amx, or 'all'")
    for level in levels:
        try:
            isa.choose(level, "--isa")
        except isa.UnsupportedISAError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return levels


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _configs(s: str) -> list[str]:
    from .bench.search import CONFIGS

    names = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in names if x.upper() not in {c.upper() for c in CONFIGS}]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown search bench config {', '.join(bad) or repr(s)}; choose from {', '.join(CONFIGS)}")
    return names


def _read_records(path: str | None, stdin, require_text: bool = True) -> Iterator[tuple[int, dict]]:
    """JSON Lines records ``{"id"?, "text", ...}``; blank lines are skipped."""
    name = path if path and path != "-" else "<stdin>"
    try:
        fh = stdin if name == "<stdin>" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise errors.InputError(f"{name}: cannot open: {e.strerror or e}") from None
    try:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise errors.RecordError(f"{name}:{lineno}: not valid JSON ({e.msg}); "
                                         'expected {"id": ..., "text": "..."}') from None
            except RecursionError:
                raise errors.RecordError(f"{name}:{lineno}: nested too deeply to parse "
                                         "(arrays or objects inside one another)") from None
            if not isinstance(rec, dict):
                raise errors.RecordError(f"{name}:{lineno}: expected a JSON object with a \"text\" key")
            if require_text and not isinstance(rec.get("text"), str):
                raise errors.RecordError(f"{name}:{lineno}: \"text\" is missing or not a string")
            yield lineno, rec
    except UnicodeDecodeError as e:
        raise errors.InputError(f"{name}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    finally:
        if fh is not stdin:
            fh.close()


def _open_encoder(args):
    from .embedding import Encoder
    from .hub import resolve_model

    return Encoder.from_gguf(resolve_model(args.model), threads=args.threads, device=args.device)


def _print_json(obj, out) -> None:
    """One JSON line; NaN or infinity (not JSON) is an error, never printed."""
    try:
        line = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise errors.LodevecError(f"refusing to print invalid JSON: {e}") from None
    out.write(line + "\n")


# ------------------------------------------------------------------------ commands
def cmd_embed(args, out) -> int:
    from .embedding import Embedder
    from .text.validity import is_blank, surrogate_at

    records = list(_read_records(args.input, sys.stdin))
    emb = Embedder(_open_encoder(args), cache_size=0 if args.no_cache else DEFAULT_CACHE_ENTRIES)
    for lineno, rec in records:
        if is_blank(rec["text"]):
            raise errors.RecordError(f"{args.input or '<stdin>'}:{lineno}: text is empty")
        for key in ("text", "id"):
            if isinstance(rec.get(key), str) and surrogate_at(rec[key]) is not None:
                raise errors.RecordError(f"{args.input or '<stdin>'}:{lineno}: \"{key}\" is not "
                                         "valid Unicode (a lone surrogate)")
    chunk = 1024
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        res = emb.encode([r["text"] for _, r in part], task=args.task, dim=args.dim,
                         batch_size=args.batch_size)
        for (_, rec), vec, n, trunc in zip(part, res.embeddings, res.n_tokens, res.truncated,
                                           strict=True):
            _print_json({"id": rec.get("id"), "embedding": vec.tolist(), "n_tokens": n,
                         "truncated": trunc}, out)
    return EXIT_OK


def cmd_tokenize(args, out) -> int:
    enc = _open_encoder(args)
    records = list(_read_records(args.input, sys.stdin))
    ids = enc.tokenize([r["text"] for _, r in records], task=args.task)
    for (_, rec), row in zip(records, ids, strict=True):
        _print_json({"id": rec.get("id"), "ids": row}, out)
    return EXIT_OK


def cmd_model_info(args, out) -> int:
    from .gguf.model import GGUFModel
    from .hub import resolve_model
    from .kernels import kernel_info

    model = GGUFModel.open(resolve_model(args.file))
    k = kernel_info()   # what this model would run on here
    kernels = {key: k[key] for key in ("isa", "int8_dot", "openmp", "threads")}
    out.write(json.dumps({**model.info(), "kernels": kernels}, indent=2) + "\n")
    return EXIT_OK


def cmd_info(args, out) -> int:
    """``lodevec info``: version, kernel ISA level in use, levels built and supported,
    the CPU features dispatch looks at, OpenMP and threads (JSON)."""
    import platform

    from . import __version__
    from .kernels import kernel_info

    out.write(json.dumps({"version": __version__, "python": platform.python_version(),
                          "machine": platform.machine(), **kernel_info()}, indent=2) + "\n")
    return EXIT_OK


def cmd_model_pull(args, out) -> int:
    from .hub import pull

    path = pull(args.quant, force=args.force, progress=not args.quiet)
    _print_json({"quant": args.quant, "path": str(path), "size_bytes": path.stat().st_size}, out)
    return EXIT_OK


def cmd_bench(args, out) -> int:
    if args.what == "startup":
        from .bench.startup import main_startup

        return main_startup(args, out)
    if args.what == "search":
        from .bench.search import DEFAULT_CONFIGS, run_search_bench

        say = None if args.json else (lambda msg: print(f"... {msg}", file=sys.stderr, flush=True))
        rows = run_search_bench(args.rows, args.dim, args.queries, configs=args.configs or DEFAULT_CONFIGS,
                                progress=say)
        for row in rows:
            if args.json:
                _print_json(row, out)
            else:
                out.write("  ".join(f"{k}={v}" for k, v in row.items()) + "\n")
        return EXIT_OK
    enc = _open_encoder(args)
    if not args.json:
        out.write(f"model {enc.model.path.name}  threads {args.threads or 'all'}\n")
        out.write(f"{'isa':>8} {'seq_len':>8} {'batch':>6} {'tokens/s':>10} {'ms/batch':>10}\n")
    from .bench.model import run_model_bench

    for row in run_model_bench(enc, args.seq_len, args.batch, min_time=args.min_time,
                               levels=args.isa):
        if args.json:
            _print_json(row, out)
        else:
            out.write(f"{row['isa']:>8} {row['seq_len']:>8} {row['batch']:>6} "
                      f"{row['tokens_per_s']:>10.1f} {row['ms_per_batch']:>10.2f}\n")
        out.flush()
    return EXIT_OK


# ------------------------------------------------------------------------ store commands
def _db_uri(args, create: bool = False) -> str:
    """--db, else $LODEVEC_DB, else the nearest .lodevec (``index`` creates ./.lodevec)."""
    args.db = resolve_db(args.db, create=create)
    return args.db


def _open_session(args, create: bool):
    """The collection plus an embedder for the model recorded with it (or --model)."""
    from .session import open_session
    from .store import Database

    # one short query gains nothing from a second thread (its threads would only wait
    # for each other), so `search` embeds on one unless --threads says otherwise
    threads = args.threads or (1 if args.command == "search" else None)
    return open_session(Database(_db_uri(args, create), resident=False), args.collection,
                        model=args.model, create=create, dim=getattr(args, "dim", None),
                        threads=threads, device=args.device)


def _open_collection(args):
    from .store import Database

    return Database(_db_uri(args), resident=False).open(args.collection)


def _selection(args):
    from .ingest.walk import Selection

    types = [t.strip() for v in args.type or () for t in v.split(",") if t.strip()]
    return Selection(hidden=args.hidden, globs=args.glob or (), types=types,
                     ignore_files=not args.no_ignore)


def cmd_index(args, out) -> int:
    from .cluster import indexer_for  # Indexer, or with --ray a RayIndexer
    from .console.progress import IndexProgress
    from .ingest.indexer import record_chunks

    if not args.paths and not args.input:
        raise errors.InputError("give files or folders to index (`lodevec index .`), or --input FILE.jsonl")
    select = _selection(args)
    records = None
    if args.input:  # every record checked before the collection is opened or created
        name = args.input if args.input != "-" else "<stdin>"
        lines, recs = [], []
        for lineno, rec in _read_records(args.input, sys.stdin, require_text=False):
            lines.append(f"{name}:{lineno}")
            recs.append(rec)
        records = record_chunks(recs, source=name, labels=lines)
    for p in args.paths:  # before a database is created for nothing
        if not Path(p).exists():
            raise errors.InputError(f"{p}: no such file or directory")
    session = _open_session(args, create=True)
    coll, emb = session.collection, session.embedder
    progress = IndexProgress.for_args(args, sys.stderr)
    try:
        ix = indexer_for(args)(coll, emb, chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                               batch_size=args.batch_size, progress=progress.embedded, dim=session.dim,
                               select=select, on_read=progress.reading, on_plan=progress.planned)
        if records is not None:
            summary = ix.index_chunks(records)
        if args.paths:
            summary = ix.index_paths(args.paths, prune=not args.no_prune,
                                     follow_symlinks=args.follow_symlinks)
    finally:
        progress.close()
    coll.maintain()
    s = summary.to_dict()
    if args.json:
        _print_json(s, out)
        return EXIT_OK
    binary = sum(1 for sk in s["skipped"] if sk["reason"].startswith("binary"))
    out.write(f"indexed {s['files']} files ({s['files_unchanged']} unchanged) into {args.db}: "
              f"{s['chunks_embedded']} chunks embedded, {s['chunks_skipped']} unchanged, "
              f"{s['chunks_removed']} removed, {s['tokens']} tokens in {s['seconds']:.1f}s "
              f"({s['tokens_per_s']:.0f} tokens/s)\n")
    if s["pruned"]:
        out.write(f"  pruned {len(s['pruned'])} vanished or deselected files: "
                  f"{', '.join(s['pruned'][:5])}{' ...' if len(s['pruned']) > 5 else ''}\n")
    if s["skipped"]:
        out.write(f"  skipped {len(s['skipped'])} files ({binary} binary)\n")
        for sk in s["skipped"][:50]:
            out.write(f"  skipped {sk['path']}: {sk['reason']}\n")
        if len(s["skipped"]) > 50:
            out.write(f"  ... and {len(s['skipped']) - 50} more (--json lists all)\n")
    return EXIT_OK


def _filter_error(where: str, e: Exception) -> errors.InputError:
    """A failed --where as one line: the filter, the engine's reason without its Rust
    source paths, and the columns there are."""
    import re

    from .store.records import COLUMNS

    reason = str(e).split(": bad query or filter ", 1)[-1]
    reason = reason.split(": ", 1)[1] if reason.startswith(repr(where)) else reason
    reason = re.sub(r",?\s*/\S+\.rs:\d+(:\d+)?", "", reason)
    for noise in ("lance error: ", "Query Execution error: ", "Execution error: ", "Invalid input, "):
        reason = reason.replace(noise, "")
    reason = reason.split(" Valid fields are")[0].strip().rstrip(".")
    cols = ", ".join(c for c in COLUMNS if c != "embedding")
    return errors.InputError(
        f"bad --where filter {where!r}: {reason}. Columns you can filter on: {cols} "
        "(metadata is a JSON string: e.g. metadata LIKE '%\"lang\": \"en\"%'; "
        "source is the path as `lodevec ls` prints it)")


def _call_filtered(where, fn):
    try:
        return fn()
    except errors.StoreError as e:
        if where and not isinstance(e, (errors.CollectionNotFoundError, errors.ModelMismatchError)):
            raise _filter_error(where, e) from None
        raise


def _shown_path(sources, source: str) -> str:
    """A stored source as printed: relative to the working directory when below it."""
    p = sources.path(source)
    cwd = Path.cwd()
    inside = cwd in p.parents or (sources.root is not None and sources.root in p.parents
                                  and (cwd == sources.root or sources.root in cwd.parents))
    try:
        return os.path.relpath(p) if p.is_absolute() and inside else str(p)
    except ValueError:
        return str(p)


def cmd_search(args, out) -> int:
    from .ingest.sources import SourceMap

    query = read_query(args.query, sys.stdin)
    if not query.strip():
        raise errors.InputError("the query is empty" + (" (nothing on stdin)" if args.query == "-" else ""))
    session = _open_session(args, create=False)
    coll, q = session.collection, session.embed_query(query)
    mode = "hybrid" if args.hybrid else "vector"
    k = args.k
    per_file = 1 if args.files_with_matches else args.max_count
    fetch = k if per_file is None else max(4 * k, 50)  # room to fill k after the per-file cap
    results = _call_filtered(args.where, lambda: coll.search(
        q, k=fetch, where=args.where, query_text=query, mode=mode, exact=args.exact))
    if per_file is not None:
        kept, count = [], {}
        for r in results:
            count[r.source] = count.get(r.source, 0) + 1
            if count[r.source] <= per_file:
                kept.append(r)
        results = kept[:k]
    sources = SourceMap.for_collection(coll)
    legacy = 0
    if args.json:
        for r in results:
            record = r.line_start is None and not r.id.startswith(f"{r.source}#")
            legacy += r.line_start is None and not record
            _print_json({"id": r.id, "score": r.score, "text": r.text, "source": r.source,
                         "path": None if record else _shown_path(sources, r.source),
                         "chunk": r.chunk, "line_start": r.line_start, "line_end": r.line_end,
                         "metadata": r.metadata}, out)
    elif args.files_with_matches:
        for r in results:
            out.write(_shown_path(sources, r.source) + "\n")
    else:
        pal = output.Palette(output.use_color(args.color, out))
        printer = output.HitPrinter(out, query, pal, context=args.context, scores=args.scores,
                                    read_file=output.file_lines_reader())
        for r in results:
            record = r.line_start is None and not r.id.startswith(f"{r.source}#")
            if record:
                printer.hit(f"{r.source}#{r.id}", None, None, r.text, r.score)
                continue
            legacy += r.line_start is None
            path = str(sources.path(r.source))
            printer.hit(_shown_path(sources, r.source), path, r.line_start, r.text, r.score)
    if legacy:
        print(f"note: {legacy} of these hits come from chunks indexed before lodevec stored line "
              "numbers; re-index their files (`lodevec index PATH`) to get them", file=sys.stderr)
    return EXIT_OK if results else EXIT_FAIL


def cmd_ls(args, out) -> int:
    from .ingest.sources import SourceMap

    coll = _open_collection(args)
    sources = SourceMap.for_collection(coll)
    counts = {s: len(ids) for s, ids in coll.hashes_by_source().items()}
    for s in sorted(counts, key=lambda s: str(sources.path(s))):
        if args.json:
            _print_json({"source": s, "path": _shown_path(sources, s), "chunks": counts[s]}, out)
        else:
            out.write(f"{counts[s]:>6}  {_shown_path(sources, s)}\n")
    if not args.json:
        print(f"{len(counts)} sources, {sum(counts.values())} chunks in {args.db}", file=sys.stderr)
    return EXIT_OK if counts else EXIT_FAIL


def _sources_for_paths(coll, paths: list[str]) -> tuple[list[str], list[str]]:
    """The stored sources of files and folders ``paths`` (either spelling), and the
    paths that matched none."""
    from .ingest.sources import SourceMap

    sources = SourceMap.for_collection(coll)
    stored = coll.sources()
    found, missing = [], []
    for p in paths:
        full = Path(os.path.abspath(os.path.expanduser(p)))
        full = full.parent.resolve() / full.name if full.parent.exists() else full
        hit = [s for s in stored if sources.under(s, [full]) or s == p]
        (found.extend(hit) if hit else missing.append(p))
    return sorted(set(found)), missing


def _delete_sources(coll, paths, out, as_json) -> int:
    srcs, missing = _sources_for_paths(coll, paths)
    n = coll.delete_sources(srcs) if srcs else 0
    if as_json:
        _print_json({"deleted": n, "sources": srcs, "not_indexed": missing}, out)
    else:
        out.write(f"removed {n} chunks of {len(srcs)} files\n")
    for p in missing:
        print(f"lodevec: {p}: not indexed (see `lodevec ls`)", file=sys.stderr)
    return EXIT_OK if srcs and not missing else EXIT_FAIL


def cmd_rm(args, out) -> int:
    return _delete_sources(_open_collection(args), args.paths, out, args.json)


def cmd_delete(args, out) -> int:
    if not (args.ids or args.source or args.where):
        raise errors.InputError("give ids, --source PATH or --where SQL to delete")
    coll = _open_collection(args)
    if args.source:
        return _delete_sources(coll, args.source, out, True)
    n = 0
    if args.where:
        n += _call_filtered(args.where, lambda: coll.delete(where=args.where))
    if args.ids:
        n += coll.delete(ids=args.ids)
    _print_json({"deleted": n}, out)
    if not n:
        hint = ("; to remove a file's rows use `lodevec rm FILE`"
                if any(os.path.exists(i) for i in args.ids or ()) else "")
        print(f"lodevec: nothing deleted: no row matched{hint}", file=sys.stderr)
    return EXIT_OK if n else EXIT_FAIL


def cmd_stats(args, out) -> int:
    stats = _open_collection(args).stats()
    if args.json:
        _print_json(stats, out)
    else:
        for k, v in stats.items():
            out.write(f"{k:>14}: {json.dumps(v) if isinstance(v, (dict, list)) else v}\n")
    return EXIT_OK


def _duration(s: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``7d`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = s.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 0, 30s, 10m, 2h or 7d, got {s!r}") from None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _lock_is_free(coll) -> bool | None:
    """Whether no other process holds the collection's write lock right now (every
    lodevec write, index build and compaction holds it); None on an object store, whose
    lease other writers may take at any moment (store/lease.py)."""
    import fcntl

    path = getattr(coll._t.lock, "path", None)  # the local WriteLock (store/_lance.py)
    if path is None:
        return None
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def cmd_optimize(args, out) -> int:
    coll = _open_collection(args)
    keep = args.keep_versions
    why = f"kept versions newer than {args.keep_versions:g}s (--keep-versions)" if keep is not None else ""
    if keep is None:
        free = _lock_is_free(coll)
        keep = 0.0 if free else 300.0
        if free:
            why = "pruned to the latest version (no other lodevec process holds the table)"
        elif free is None:
            why = ("kept the last 5 minutes of versions: on an object store writers on other "
                   "machines may be reading them (pass --keep-versions 0 to prune)")
        else:
            why = ("kept the last 5 minutes of versions: another process holds the table's "
                   "write lock (run again when it is done, or pass --keep-versions 0)")
    res = coll.optimize(cleanup_older_than=keep)
    res = res if isinstance(res, dict) else {"optimized": True}
    if args.json:
        _print_json({**res, "kept_versions_seconds": keep}, out)
    else:
        out.write(f"optimized {args.db}: {_size(res['bytes_before'])} -> {_size(res['bytes_after'])}, "
                  f"{res['versions_before']} -> {res['versions_after']} versions, "
                  f"{res['fragments_before']} -> {res['fragments_after']} fragments "
                  f"in {res['seconds']:.1f}s; {why}\n")
    return EXIT_OK


def cmd_serve(args, out) -> int:
    from .embedding import Embedder
    from .hub import resolve_model
    from .serve import serve_from_args
    from .serve.run import parse_addr, security_from_args
    from .session import model_for
    from .store import Database

    # an open bind is refused before the model loads, not after
    security_from_args(args).check_bind(parse_addr(args.addr)[0])
    if args.db is None and args.watch:
        args.db = resolve_db(None, create=True)
    db = Database(args.db, resident=False) if args.db else None
    if args.watch and db is None:
        raise errors.InputError("--watch needs --db: the database to keep current")
    emb = Embedder.from_gguf(resolve_model(model_for(db, args.collection, args.model)),
                             threads=args.threads, device=args.device, cache_size=args.cache_size)
    handle = _start_watch(args, db, emb) if args.watch else None
    try:
        serve_from_args(emb, args.db, args)
    finally:
        if handle is not None:
            handle.stop()
    return EXIT_OK


def _start_watch(args, db, emb):
    """``serve --watch``: a watcher thread on the served collection (its own handle on
    the table; the store's lock and version checks keep the two consistent)."""
    from .ingest.watch import Watcher
    from .session import Session, collection_for

    coll = collection_for(db, args.collection, emb, dim=args.dim, create=True)
    return Watcher(Session(coll, emb), args.watch).start()


def cmd_mcp(args, out) -> int:
    from .mcp.server import check_http, run
    from .session import open_session
    from .store import Database

    check_http(args.http, args.insecure)  # before the model loads
    session = open_session(Database(_db_uri(args, create=True)), args.collection, model=args.model, create=True,
                           threads=args.threads, device=args.device)
    run(session, http=args.http, watch=args.watch, insecure=args.insecure,
        chunk_tokens=args.chunk_tokens, overlap=args.overlap)
    return EXIT_OK


def cmd_watch(args, out) -> int:
    import time

    from .ingest.watch import Watcher

    def report(summary, paths) -> None:
        s = summary.to_dict()
        if args.json:
            _print_json({"time": time.time(), "touched": None if paths is None else len(paths),
                         **s}, out)
        else:
            what = "indexed" if paths is None else f"{len(paths)} changed paths:"
            out.write(f"{time.strftime('%H:%M:%S')}  {what} {s['files']} files, "
                      f"{s['chunks_embedded']} chunks embedded, {s['chunks_removed']} removed, "
                      f"{s['chunks_skipped']} unchanged ({s['seconds']:.1f}s)\n")
            for sk in s["skipped"][:20]:
                out.write(f"  skipped {sk['path']}: {sk['reason']}\n")
        out.flush()

    session = _open_session(args, create=True)
    watcher = Watcher(session, args.paths, chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                      batch_size=args.batch_size, initial=not args.no_initial, on_update=report)
    if not args.json:
        out.write(f"watching {', '.join(str(r) for r in watcher.roots)} (Ctrl-C to stop)\n")
        out.flush()
    watcher.run()
    return EXIT_OK


# ------------------------------------------------------------------------ parser
def _model_args(sp, required=False):
    sp.add_argument("--model", "-m", required=required,
                    help="GGUF file (default: $LODEVEC_MODEL, else the model in the cache)")
    sp.add_argument("--threads", "-t", type=_positive, default=None, help="compute threads (default: all cores)")
    sp.add_argument("--device", default=DEFAULT_DEVICE, help=f"compute backend (default: {DEFAULT_DEVICE})")


def _db_args(sp):
    sp.add_argument("--db", default=None,
                    help="database folder or s3://... URI (default: $LODEVEC_DB, else the nearest "
                         ".lodevec folder here or above)")
    sp.add_argument("--collection", default=DEFAULT_COLLECTION,
                    help=f"table name (default: {DEFAULT_COLLECTION})")
    _storage_args(sp)


def _storage_args(sp):
    from .store.storage import add_cli_arguments  # --storage-option KEY=VALUE

    add_cli_arguments(sp)


def _chunk_args(sp):
    sp.add_argument("--chunk-tokens", type=_positive, default=256,
                    help="word pieces per chunk (default 256; as the index was made)")
    sp.add_argument("--overlap", type=int, default=32, help="word pieces shared by neighbouring chunks")


def _select_args(sp):
    sp.add_argument("--hidden", action="store_true", help="also index hidden files and folders")
    sp.add_argument("--glob", "-g", action="append", metavar="GLOB",
                    help="include files matching GLOB (gitignore syntax, below the folder given); "
                         "'!GLOB' excludes; repeatable")
    sp.add_argument("--type", "-T", action="append", metavar="TYPES",
                    help="only these file types, e.g. py,md (rg's names: see `lodevec index --type-list`)")
    sp.add_argument("--no-ignore", action="store_true",
                    help="do not honour .gitignore, .ignore and .lodevecignore")


def _p_embed(sp):
    from .arch import TASKS

    _model_args(sp)
    sp.add_argument("--input", "-i", help="JSON Lines file (default: stdin; '-' for stdin)")
    sp.add_argument("--task", choices=TASKS, default="none",
                    help="nomic task prefix to add (default: none, the text as given)")
    sp.add_argument("--dim", type=_positive, default=None, help="output dimension (Matryoshka: 512/256/128/64)")
    sp.add_argument("--batch-size", type=_positive, default=32)
    sp.add_argument("--no-cache", action="store_true", help="do not cache repeated texts")
    sp.set_defaults(func=cmd_embed)


def _p_tokenize(sp):
    from .arch import TASKS

    _model_args(sp)
    sp.add_argument("--input", "-i", help="JSON Lines file (default: stdin)")
    sp.add_argument("--task", choices=TASKS, default="none")
    sp.set_defaults(func=cmd_tokenize)


def _p_model(sp):
    msub = sp.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    ip = msub.add_parser("info", help="architecture, sizes, tensor types as JSON")
    ip.add_argument("file", nargs="?", help="GGUF file (default: the cached model)")
    ip.set_defaults(func=cmd_model_info)
    pp = msub.add_parser("pull", help="download nomic-embed-text-v1.5 GGUF into the cache")
    pp.add_argument("--quant", default="Q4_K_M", help="quantization (default Q4_K_M)")
    pp.add_argument("--force", action="store_true", help="download again even if cached")
    pp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pp.set_defaults(func=cmd_model_pull)


def _p_bench(sp):
    from .bench.search import CONFIGS

    sp.add_argument("what", nargs="?", choices=["model", "search", "startup"], default="model")
    _model_args(sp)
    sp.add_argument("--seq-len", type=_ints, default=[16, 128, 512])
    sp.add_argument("--batch", type=_ints, default=[1, 16])
    sp.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs per shape")
    sp.add_argument("--isa", type=_levels, default=None,
                    help="(model) comma-separated ISA levels to run in turn, or 'all' "
                         "(default: the level in use)")
    sp.add_argument("--rows", type=_positive, default=100_000, help="(search) table rows")
    sp.add_argument("--dim", type=_positive, default=768, help="(search) vector dimension")
    sp.add_argument("--queries", type=_positive, default=200, help="(search) number of queries")
    sp.add_argument("--runs", type=_positive, default=10, help="(startup) runs per command")
    sp.add_argument("--db", default=None,
                    help="(startup) an existing database to search (default: one of --rows built "
                         "in a temporary folder)")
    sp.add_argument("--configs", type=_configs, default=None,
                    help=f"(search) comma-separated, from {','.join(CONFIGS)} "
                         "(default: all but IVF_PQ)")
    sp.add_argument("--json", action="store_true", help="JSON Lines output")
    sp.set_defaults(func=cmd_bench)


def _p_index(sp):
    _db_args(sp)
    _model_args(sp)
    sp.add_argument("paths", nargs="*", help="files and folders (ignore files are honoured)")
    sp.add_argument("--input", "-i", help="JSON Lines records {\"id\", \"text\", \"metadata\"?} ('-' for stdin)")
    sp.add_argument("--dim", type=_positive, default=None, help="Matryoshka dimension for a new table")
    sp.add_argument("--chunk-tokens", type=_positive, default=256, help="word pieces per chunk (default 256)")
    sp.add_argument("--overlap", type=int, default=32, help="word pieces shared by neighbouring chunks")
    sp.add_argument("--batch-size", type=_positive, default=256, help="chunks per embedding batch / write")
    sp.add_argument("--no-prune", action="store_true", help="keep chunks of files that disappeared")
    sp.add_argument("--follow-symlinks", action="store_true",
                    help="follow links out of the folders given (never into /proc, /sys, /dev)")
    _select_args(sp)
    sp.add_argument("--type-list", action="store_true", help="print the --type names and exit")
    sp.add_argument("--progress", action="store_true",
                    help="a status line every few seconds when stderr is not a terminal")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sp.add_argument("--json", action="store_true", help="print a JSON summary instead")
    from .cluster import add_cli_arguments as add_ray_arguments

    add_ray_arguments(sp)  # --ray [auto|ADDRESS], --ray-workers (lodevec.ingest.distributed)
    sp.set_defaults(func=cmd_index)


def _p_search(sp):
    _db_args(sp)
    _model_args(sp)
    sp.add_argument("query", help="what to look for ('-' reads it from stdin)")
    sp.add_argument("-k", "-n", "--limit", dest="k", type=_positive, default=10,
                    help="number of results (default 10)")
    sp.add_argument("--where", help="SQL filter, e.g. \"source LIKE '%%.md'\"")
    sp.add_argument("--hybrid", action="store_true", help="fuse vector and full-text ranks (RRF)")
    sp.add_argument("--exact", action="store_true",
                    help="score every row (no vector index): exact top-k, slower on big tables")
    sp.add_argument("-C", "--context", type=int, default=0, metavar="N",
                    help="show N lines of the file around each hit's line")
    sp.add_argument("-l", "--files-with-matches", action="store_true",
                    help="print only the paths of the files with hits, best first")
    sp.add_argument("--max-count", type=_positive, default=None, metavar="N",
                    help="at most N hits per file")
    sp.add_argument("--scores", action="store_true", help="add each hit's score as a last column")
    sp.add_argument("--color", "--colour", choices=["auto", "always", "never"], default="auto",
                    help="colour path, line number and matched words (auto: on a terminal, "
                         "unless NO_COLOR is set)")
    sp.add_argument("--json", action="store_true", help="JSON Lines output")
    sp.set_defaults(func=cmd_search)


def _p_ls(sp):
    _db_args(sp)
    sp.add_argument("--json", action="store_true", help="JSON Lines: source, path, chunks")
    sp.set_defaults(func=cmd_ls)


def _p_rm(sp):
    _db_args(sp)
    sp.add_argument("paths", nargs="+", metavar="PATH", help="indexed files or folders")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_rm)


def _p_delete(sp):
    _db_args(sp)
    sp.add_argument("ids", nargs="*", help="row ids")
    sp.add_argument("--source", action="append", metavar="PATH", help="every row of this file or folder")
    sp.add_argument("--where", help="every row matching this SQL filter")
    sp.set_defaults(func=cmd_delete)


def _p_stats(sp):
    _db_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_stats)


def _p_optimize(sp):
    _db_args(sp)
    sp.add_argument("--keep-versions", type=_duration, default=None, metavar="DURATION",
                    help="keep versions newer than this (0, 30s, 10m, 2h, 7d); default: prune to "
                         "the latest when no other process holds the table, else keep 5 minutes")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_optimize)


def _p_serve(sp):
    from .serve.options import add_arguments

    sp.add_argument("--db", default=None, help="database folder (omit to serve embeddings only)")
    _storage_args(sp)
    _model_args(sp)
    add_arguments(sp)
    sp.add_argument("--watch", nargs="+", metavar="PATH", default=None,
                    help="keep these files/folders indexed into --db while serving")
    sp.set_defaults(func=cmd_serve)


def _p_mcp(sp):
    _db_args(sp)
    _model_args(sp)
    sp.add_argument("--http", metavar="HOST:PORT", default=None,
                    help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    sp.add_argument("--insecure", action="store_true",
                    help="allow --http on a non-loopback address (there is no authentication)")
    sp.add_argument("--watch", nargs="+", metavar="PATH", default=None,
                    help="keep these files/folders indexed while serving")
    _chunk_args(sp)
    sp.set_defaults(func=cmd_mcp)


def _p_watch(sp):
    _db_args(sp)
    _model_args(sp)
    sp.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (ignore files are honoured)")
    _chunk_args(sp)
    sp.add_argument("--batch-size", type=_positive, default=256, help="chunks per embedding batch / write")
    sp.add_argument("--no-initial", action="store_true", help="do not index PATH... before watching")
    sp.add_argument("--dim", type=_positive, default=None, help="Matryoshka dimension for a new table")
    sp.add_argument("--json", action="store_true", help="one JSON line per update")
    sp.set_defaults(func=cmd_watch)


#: name -> (help, the function adding its options); options are added only for the
#: command that runs (see the module docstring)
def _p_info(sp):
    sp.set_defaults(func=cmd_info)


COMMANDS = {
    "info": ("version, kernel ISA level, CPU features, OpenMP, threads (JSON)", _p_info),
    "embed": ("embed JSON Lines {\"id\", \"text\"} -> {\"id\", \"embedding\", ...}", _p_embed),
    "tokenize": ("token ids per JSON Lines record", _p_tokenize),
    "model": ("model files: info, pull", _p_model),
    "bench": ("time the model forward (or `bench search`)", _p_bench),
    "index": ("index files/folders (or --input records); creates ./.lodevec by default", _p_index),
    "search": ("search by meaning; prints path:LINE: best line (grep-shaped)", _p_search),
    "ls": ("list indexed sources with their chunk counts", _p_ls),
    "rm": ("remove indexed files or folders from the index", _p_rm),
    "delete": ("delete rows by id, --source PATH or --where SQL", _p_delete),
    "stats": ("rows, sources, model, index state, size", _p_stats),
    "optimize": ("compact files, prune old versions, update indexes", _p_optimize),
    "serve": ("HTTP API: OpenAI-compatible embeddings, search, documents", _p_serve),
    "mcp": ("MCP server (stdio, or --http): search tools for agents", _p_mcp),
    "watch": ("keep the index current while files under PATH... change", _p_watch),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommand it names gets its options (None:
    every subcommand, e.g. for documentation)."""
    p = argparse.ArgumentParser(prog="lodevec", description="Local semantic search on GGUF embedding models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    for name, (help_, populate) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_)
        if chosen is None or name == chosen:
            populate(sp)
    return p


def _version() -> str:
    from . import __version__

    return f"lodevec {__version__}"


def main(argv: list[str] | None = None, out=None) -> int:
    """Run the CLI; returns the exit code."""
    out = out or sys.stdout
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if getattr(args, "type_list", False):
        from .ingest.walk import FILE_TYPES

        for name, globs in sorted(FILE_TYPES.items()):
            out.write(f"{name}: {', '.join(globs)}\n")
        return EXIT_OK
    try:
        if getattr(args, "storage_options", None):
            from .store.storage import apply_cli_arguments

            apply_cli_arguments(args)  # --storage-option: defaults of every Database opened
        if getattr(args, "threads", None):
            from . import kernels

            kernels.set_num_threads(args.threads)
        return args.func(args, out)
    except BrokenPipeError:  # the reader went away (| head): done, as rg
        if out is sys.stdout:
            silence_stdout()
        return EXIT_OK
    except (errors.InputError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_INPUT
    except (errors.LodevecError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """An error as one line: LanceDB's Rust source locations (``, /root/.cargo/...rs:12:5``)
    mean nothing to a user and are dropped."""
    import re

    msg = re.sub(r",?\s*/\S+\.rs:\d+(:\d+)?", "", str(e))
    return " ".join(line.strip() for line in msg.splitlines()) or msg


def console_main() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    sys.exit(code)
