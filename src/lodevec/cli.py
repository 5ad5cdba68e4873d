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
from .constants import TASKS

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


def _read_records(path: str | None, stdin) -> Iterator[tuple[int, dict]]:
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
            if not isinstance(rec, dict):
                raise errors.RecordError(f"{name}:{lineno}: expected a JSON object with a \"text\" key")
            if not isinstance(rec.get("text"), str):
                raise errors.RecordError(f"{name}:{lineno}: \"text\" is missing or not a string")
            yield lineno, rec
    except UnicodeDecodeError as e:
        raise errors.InputError(f"{name}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    finally:
        if fh is not stdin:
            fh.close()


def _open_encoder(args):
    from .embedder import Encoder
    from .hub import resolve_model

    return Encoder.from_gguf(resolve_model(args.model), threads=args.threads)


def _print_json(obj, out) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------ commands
def cmd_embed(args, out) -> int:
    from .embedder import Embedder

    records = list(_read_records(args.input, sys.stdin))
    emb = Embedder(_open_encoder(args), cache_size=0 if args.no_cache else 50_000)
    for lineno, rec in records:
        if not rec["text"].strip():
            raise errors.RecordError(f"{args.input or '<stdin>'}:{lineno}: text is empty")
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
    from .gguf_model import GGUFModel
    from .hub import resolve_model

    model = GGUFModel.open(resolve_model(args.file))
    out.write(json.dumps(model.info(), indent=2) + "\n")
    return EXIT_OK


def cmd_model_pull(args, out) -> int:
    from .hub import pull

    path = pull(args.quant, force=args.force, progress=not args.quiet)
    _print_json({"quant": args.quant, "path": str(path), "size_bytes": path.stat().st_size}, out)
    return EXIT_OK


def cmd_bench(args, out) -> int:
    if args.what == "search":
        from .search_bench import run_search_bench

        rows = run_search_bench(args.rows, args.dim, args.queries)
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
    from .bench import run_model_bench

    for row in run_model_bench(enc, args.seq_len, args.batch, min_time=args.min_time):
        if args.json:
            _print_json(row, out)
        else:
            out.write(f"{row['seq_len']:>8} {row['batch']:>6} {row['tokens_per_s']:>10.1f} "
                      f"{row['ms_per_batch']:>10.2f}\n")
        out.flush()
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
    sp.add_argument("--json", action="store_true", help="JSON Lines output")
    sp.set_defaults(func=cmd_bench)
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
    except BrokenPipeError:
        return EXIT_OK


def console_main() -> None:
    sys.exit(main())
