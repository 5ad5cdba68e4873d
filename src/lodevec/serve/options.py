"""The ``lodevec serve`` options, apart from the server: the CLI builds its parser
from this module at every start, so it imports no web framework."""

from __future__ import annotations

import argparse

from ..settings import DEFAULT_ADDR, DEFAULT_CACHE_ENTRIES, DEFAULT_COLLECTION
from .limits import Limits

__all__ = ["add_arguments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the server's options (not ``--model`` / ``--db`` / ``--threads``) to a parser."""
    d = Limits()
    p.add_argument("--addr", default=DEFAULT_ADDR, help=f"HOST:PORT to listen on (default {DEFAULT_ADDR})")
    p.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection to search and write")
    p.add_argument("--dim", type=int, default=None, help="dimension of a new collection (Matryoshka)")
    p.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_ENTRIES,
                   help="embedding cache entries (0: off)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="texts per model forward")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="how long a text waits for others to share its forward")
    p.add_argument("--max-inputs", type=int, default=d.max_inputs, help="texts per request")
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20, help="request body size")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="texts waiting for the model before 429")
    p.add_argument("--no-truncate", action="store_true",
                   help="refuse over-long texts (413) unless a request sends truncate=true")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds in-flight requests get on shutdown")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open connections (kept below the file limit); beyond it the one idle "
                        "the longest is closed, or the new one gets 503")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout,
                   help="seconds a client has to send a request's headers (408 after)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout,
                   help="seconds a request body may go without a byte before the connection closes")
    p.add_argument("--keep-alive", type=float, default=d.keep_alive,
                   help="seconds an idle kept-alive connection stays open")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    g = p.add_argument_group("access", "API keys (sent as 'Authorization: Bearer KEY'), CORS, binding")
    g.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="full-access key: every route (repeatable; default $LODEVEC_API_KEY)")
    g.add_argument("--api-key-file", action="append", default=[], metavar="FILE",
                   help="file of full-access keys, one per line (not visible in ps)")
    g.add_argument("--read-api-key", action="append", default=[], metavar="KEY",
                   help="read-only key: search, embeddings, get, info, models, tokenize; not "
                        "documents upsert/delete (repeatable; default $LODEVEC_READ_API_KEY)")
    g.add_argument("--read-api-key-file", action="append", default=[], metavar="FILE",
                   help="file of read-only keys, one per line")
    g.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let browser pages from ORIGIN (scheme://host[:port], or *) call the "
                        "server (repeatable; default: CORS off, foreign origins get 403)")
    g.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="accept this Host name on loopback too (a reverse proxy's), besides "
                        "localhost and loopback addresses (repeatable)")
    g.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --addr without an API key")
