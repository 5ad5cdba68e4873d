"""The ``lodevec`` command: parses arguments, calls the library, prints.

``main(argv) -> int`` is what tests call.  Library errors become one line
``error: ...`` on stderr: exit 2 for bad input (files, arguments, lines), 1 for other
failures; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from . import errors
from .arch import TASKS
from .bench.search import CONFIGS
from .settings import DEFAULT_CACHE_ENTRIES, DEFAULT_COLLECTION, DEFAULT_DEVICE
from .text.validity import is_blank, surrogate_at

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


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _configs(s: str) -> list[str]:
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
        out.write(f"{'seq_len':>8} {'batch':>6} {'tokens/s':>10} {'ms/batch':>10}\n")
    from .bench.model import run_model_bench

    for row in run_model_bench(enc, args.seq_len, args.batch, min_time=args.min_time):
        if args.json:
            _print_json(row, out)
        else:
            out.write(f"{row['seq_len']:>8} {row['batch']:>6} {row['tokens_per_s']:>10.1f} "
                      f"{row['ms_per_batch']:>10.2f}\n")
        out.flush()
    return EXIT_OK


# ------------------------------------------------------------------------ store commands
def _open_session(args, create: bool):
    """The collection plus an embedder for the model recorded with it (or --model)."""
    from .session import open_session
    from .store import Database

    return open_session(Database(args.db, resident=False), args.collection, model=args.model,
                        create=create, dim=getattr(args, "dim", None), threads=args.threads,
                        device=args.device)


def _progress_bar(args):
    if args.json or not sys.stderr.isatty() and not getattr(args, "progress", False):
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(unit=" chunks", file=sys.stderr, dynamic_ncols=True)
    state = {"chunks": 0}

    def update(files: int, chunks: int, tokens: int) -> None:
        bar.update(chunks - state["chunks"])
        state["chunks"] = chunks
        rate = bar.format_dict.get("elapsed") or 0
        bar.set_postfix(files=files, tok_s=f"{tokens / rate:.0f}" if rate else "-", refresh=False)

    return update, bar.close


def cmd_index(args, out) -> int:
    from .ingest import Indexer
    from .ingest.indexer import record_chunks

    if not args.paths and not args.input:
        raise errors.InputError("give files or folders to index, or --input FILE.jsonl")
    records = None
    if args.input:  # every record checked before the collection is opened or created
        name = args.input if args.input != "-" else "<stdin>"
        lines, recs = [], []
        for lineno, rec in _read_records(args.input, sys.stdin, require_text=False):
            lines.append(f"{name}:{lineno}")
            recs.append(rec)
        records = record_chunks(recs, source=name, labels=lines)
    session = _open_session(args, create=True)
    coll, emb = session.collection, session.embedder
    update, close = _progress_bar(args)
    try:
        ix = Indexer(coll, emb, chunk_tokens=args.chunk_tokens, overlap=args.overlap,
                     batch_size=args.batch_size, progress=update, dim=session.dim)
        if records is not None:
            summary = ix.index_chunks(records)
        if args.paths:
            summary = ix.index_paths(args.paths, prune=not args.no_prune,
                                     follow_symlinks=args.follow_symlinks)
    finally:
        close()
    coll.maintain()
    s = summary.to_dict()
    if args.json:
        _print_json(s, out)
    else:
        out.write(f"indexed {s['files']} files ({s['files_unchanged']} unchanged), "
                  f"{s['chunks_embedded']} chunks embedded, {s['chunks_skipped']} unchanged, "
                  f"{s['chunks_removed']} removed, {s['tokens']} tokens in {s['seconds']:.1f}s "
                  f"({s['tokens_per_s']:.0f} tokens/s)\n")
        for sk in s["skipped"]:
            out.write(f"  skipped {sk['path']}: {sk['reason']}\n")
    return EXIT_OK


def cmd_search(args, out) -> int:
    session = _open_session(args, create=False)
    coll, q = session.collection, session.embed_query(args.query)
    mode = "hybrid" if args.hybrid else "vector"
    results = coll.search(q, k=args.k, where=args.where, query_text=args.query, mode=mode,
                          exact=args.exact)
    for r in results:
        if args.json:
            _print_json({"id": r.id, "score": r.score, "text": r.text, "source": r.source,
                         "chunk": r.chunk, "metadata": r.metadata}, out)
        else:
            snippet = " ".join(r.text.split())
            snippet = snippet[:160] + ("…" if len(snippet) > 160 else "")
            out.write(f"{r.score:.4f}  {_display_source(r.source)}:{r.chunk}\n        {snippet}\n")
    if not results and not args.json:
        out.write("no results\n")
    return EXIT_OK


def _display_source(source: str) -> str:
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def cmd_delete(args, out) -> int:
    from .store import Database

    coll = Database(args.db, resident=False).open(args.collection)
    n = coll.delete(ids=args.ids)
    _print_json({"deleted": n}, out)
    return EXIT_OK


def cmd_stats(args, out) -> int:
    from .store import Database

    stats = Database(args.db, resident=False).open(args.collection).stats()
    if args.json:
        _print_json(stats, out)
    else:
        for k, v in stats.items():
            out.write(f"{k:>14}: {json.dumps(v) if isinstance(v, (dict, list)) else v}\n")
    return EXIT_OK


def cmd_optimize(args, out) -> int:
    from .store import Database

    res = Database(args.db, resident=False).open(args.collection).optimize()
    _print_json(res if isinstance(res, dict) else {"optimized": True}, out)
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
    session = open_session(Database(args.db), args.collection, model=args.model, create=True,
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
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lodevec", description="Local semantic search on GGUF embedding models.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp, required=False):
        sp.add_argument("--model", "-m", required=required,
                        help="GGUF file (default: $LODEVEC_MODEL, else the model in the cache)")
        sp.add_argument("--threads", "-t", type=_positive, default=None, help="compute threads (default: all cores)")
        sp.add_argument("--device", default=DEFAULT_DEVICE, help=f"compute backend (default: {DEFAULT_DEVICE})")

    sp = sub.add_parser("embed", help="embed JSON Lines {\"id\", \"text\"} -> {\"id\", \"embedding\", ...}")
    model_args(sp)
    sp.add_argument("--input", "-i", help="JSON Lines file (default: stdin; '-' for stdin)")
    sp.add_argument("--task", choices=TASKS, default="none",
                    help="nomic task prefix to add (default: none, the text as given)")
    sp.add_argument("--dim", type=_positive, default=None, help="output dimension (Matryoshka: 512/256/128/64)")
    sp.add_argument("--batch-size", type=_positive, default=32)
    sp.add_argument("--no-cache", action="store_true", help="do not cache repeated texts")
    sp.set_defaults(func=cmd_embed)

    sp = sub.add_parser("tokenize", help="token ids per JSON Lines record")
    model_args(sp)
    sp.add_argument("--input", "-i", help="JSON Lines file (default: stdin)")
    sp.add_argument("--task", choices=TASKS, default="none")
    sp.set_defaults(func=cmd_tokenize)

    sp = sub.add_parser("info", help="version, kernel ISA level, CPU features, OpenMP, threads (JSON)")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("model", help="model files: info, pull")
    msub = sp.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    ip = msub.add_parser("info", help="architecture, sizes, tensor types as JSON")
    ip.add_argument("file", nargs="?", help="GGUF file (default: the cached model)")
    ip.set_defaults(func=cmd_model_info)
    pp = msub.add_parser("pull", help="download nomic-embed-text-v1.5 GGUF into the cache")
    pp.add_argument("--quant", default="Q4_K_M", help="quantization (default Q4_K_M)")
    pp.add_argument("--force", action="store_true", help="download again even if cached")
    pp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pp.set_defaults(func=cmd_model_pull)

    sp = sub.add_parser("bench", help="time the model forward (or `bench search`)")
    sp.add_argument("what", nargs="?", choices=["model", "search"], default="model")
    model_args(sp)
    sp.add_argument("--seq-len", type=_ints, default=[16, 128, 512])
    sp.add_argument("--batch", type=_ints, default=[1, 16])
    sp.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs per shape")
    sp.add_argument("--rows", type=_positive, default=100_000, help="(search) table rows")
    sp.add_argument("--dim", type=_positive, default=768, help="(search) vector dimension")
    sp.add_argument("--queries", type=_positive, default=200, help="(search) number of queries")
    sp.add_argument("--configs", type=_configs, default=None,
                    help=f"(search) comma-separated, from {','.join(CONFIGS)} "
                         "(default: all but IVF_PQ)")
    sp.add_argument("--json", action="store_true", help="JSON Lines output")
    sp.set_defaults(func=cmd_bench)

    def db_args(sp):
        sp.add_argument("--db", required=True, help="database folder (or s3://... URI)")
        sp.add_argument("--collection", default=DEFAULT_COLLECTION,
                        help=f"table name (default: {DEFAULT_COLLECTION})")

    sp = sub.add_parser("index", help="index files/folders (or --input records) into --db")
    db_args(sp)
    model_args(sp)
    sp.add_argument("paths", nargs="*", help="files and folders (.gitignore is honoured)")
    sp.add_argument("--input", "-i", help="JSON Lines records {\"id\", \"text\", \"metadata\"?} ('-' for stdin)")
    sp.add_argument("--dim", type=_positive, default=None, help="Matryoshka dimension for a new table")
    sp.add_argument("--chunk-tokens", type=_positive, default=256, help="word pieces per chunk (default 256)")
    sp.add_argument("--overlap", type=int, default=32, help="word pieces shared by neighbouring chunks")
    sp.add_argument("--batch-size", type=_positive, default=256, help="chunks per embedding batch / write")
    sp.add_argument("--no-prune", action="store_true", help="keep chunks of files that disappeared")
    sp.add_argument("--follow-symlinks", action="store_true",
                    help="follow links out of the folders given (never into /proc, /sys, /dev)")
    sp.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    sp.add_argument("--json", action="store_true", help="print a JSON summary instead")
    sp.set_defaults(func=cmd_index)

    sp = sub.add_parser("search", help="search --db by meaning")
    db_args(sp)
    model_args(sp)
    sp.add_argument("query", help="what to look for")
    sp.add_argument("-k", type=_positive, default=10, help="number of results (default 10)")
    sp.add_argument("--where", help="SQL filter, e.g. \"source LIKE '%%.md'\"")
    sp.add_argument("--hybrid", action="store_true", help="fuse vector and full-text ranks (RRF)")
    sp.add_argument("--exact", action="store_true",
                    help="score every row (no vector index): exact top-k, slower on big tables")
    sp.add_argument("--json", action="store_true", help="JSON Lines output")
    sp.set_defaults(func=cmd_search)

    sp = sub.add_parser("delete", help="delete rows by id")
    db_args(sp)
    sp.add_argument("ids", nargs="+")
    sp.set_defaults(func=cmd_delete)

    sp = sub.add_parser("stats", help="rows, sources, model, index state, size")
    db_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_stats)

    sp = sub.add_parser("optimize", help="compact files, prune old versions, update indexes")
    db_args(sp)
    sp.set_defaults(func=cmd_optimize)

    sp = sub.add_parser("serve", help="HTTP API: OpenAI-compatible embeddings, search, documents")
    sp.add_argument("--db", default=None, help="database folder (omit to serve embeddings only)")
    model_args(sp)
    from .serve import add_arguments

    add_arguments(sp)
    sp.add_argument("--watch", nargs="+", metavar="PATH", default=None,
                    help="keep these files/folders indexed into --db while serving")
    sp.set_defaults(func=cmd_serve)

    def chunk_args(sp):
        sp.add_argument("--chunk-tokens", type=_positive, default=256,
                        help="word pieces per chunk (default 256; as the index was made)")
        sp.add_argument("--overlap", type=int, default=32, help="word pieces shared by neighbouring chunks")

    sp = sub.add_parser("mcp", help="MCP server (stdio, or --http): search tools for agents")
    db_args(sp)
    model_args(sp)
    sp.add_argument("--http", metavar="HOST:PORT", default=None,
                    help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    sp.add_argument("--insecure", action="store_true",
                    help="allow --http on a non-loopback address (there is no authentication)")
    sp.add_argument("--watch", nargs="+", metavar="PATH", default=None,
                    help="keep these files/folders indexed while serving")
    chunk_args(sp)
    sp.set_defaults(func=cmd_mcp)

    sp = sub.add_parser("watch", help="keep --db current while files under PATH... change")
    db_args(sp)
    model_args(sp)
    sp.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (.gitignore is honoured)")
    chunk_args(sp)
    sp.add_argument("--batch-size", type=_positive, default=256, help="chunks per embedding batch / write")
    sp.add_argument("--no-initial", action="store_true", help="do not index PATH... before watching")
    sp.add_argument("--dim", type=_positive, default=None, help="Matryoshka dimension for a new table")
    sp.add_argument("--json", action="store_true", help="one JSON line per update")
    sp.set_defaults(func=cmd_watch)
    return p


def _version() -> str:
    from . import __version__

    return f"lodevec {__version__}"


def main(argv: list[str] | None = None, out=None) -> int:
    """Run the CLI; returns the exit code."""
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        if getattr(args, "threads", None):
            from . import kernels

            kernels.set_num_threads(args.threads)
        return args.func(args, out)
    except (errors.InputError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except (errors.LodevecError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    sys.exit(main())
