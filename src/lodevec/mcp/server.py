"""``lodevec mcp``: the search tools as an MCP server (the official ``mcp`` SDK).

A thin client of the library like the CLI: :class:`~lodevec.mcp.tools.SearchTools`
does the work; this module describes the tools for agents, turns library errors into
tool errors (the one-line message, never a traceback) and runs a transport: stdio, or
streamable HTTP at ``/mcp`` (with the SDK's Host/Origin checks on loopback).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

# at module level: the SDK evaluates the tools' (string) annotations in these globals
from pydantic import Field

from .. import errors
from .tools import MAX_K, SearchTools

INSTRUCTIONS = """\
lodevec searches a local index of files by meaning (semantic search over text chunks \
embedded with a local model). Use `search` first with a natural-language description of \
what you need; narrow with `path`; read whole chunks or files with `get`. Call `status` to \
see what is indexed and whether files changed since; `index` to add or refresh files."""

SEARCH = """\
Find passages in the indexed files by meaning, not exact words.

Use it to locate code, docs or notes about a topic when you do not know the file or the \
exact identifier. A good query describes the content you hope to find, in a few words \
or a sentence ("how retries back off after a commit conflict", "parse GGUF header \
metadata"); it does not need to match the wording. For an exact identifier or error \
string, use mode "hybrid" (meaning plus keyword ranking) or "fts" (keywords only).

Returns the k best chunks, best first: path (absolute), chunk (its index within the \
file), line_start/line_end when known, score (higher is better; cosine similarity in \
vector mode, a rank-fusion score in hybrid mode), id, and a snippet. Pass an id to \
`get` for the whole chunk, or a path for the whole file's chunks."""

INDEX = """\
Index files and folders (or refresh them) so `search` can find their content.

Incremental: only chunks whose text changed are embedded again; chunks of files that \
vanished under the given folders are removed (prune). Folders are walked as git would \
(.gitignore honoured; .git, node_modules, virtualenvs skipped). Relative paths are \
relative to the server's working directory. Returns what changed: files seen and \
unchanged, chunks embedded / skipped / removed, skipped files with the reason, and the \
collection's row count."""

STATUS = """\
What the index holds and whether it is current.

Returns the database and collection, rows (chunks), sources (files), the embedding \
model and dimension, and staleness: indexed files modified or deleted on disk since they \
were indexed (most recently modified first; bounded work, `complete` says whether every \
file was checked). Files added since are not listed: `index` their folder. When the \
server watches folders, `watch` shows its state and last update."""

LIST_SOURCES = """\
List the indexed files with their chunk counts, sorted by path.

Optional `path`: a folder or file prefix ("src/lodevec"), or a glob ("*.md", \
"docs/**/*.rst") to list only matching files."""

GET = """\
Read stored chunks: one chunk by `id` (from a search result), or every chunk of a file \
by `path`, in order (at most max_chunks).

Returns id, path, chunk, line_start/line_end when known, and the full chunk text. \
Chunks of one file overlap by a few words."""


def _call(fn, *args, **kwargs) -> dict[str, Any]:
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        return fn(*args, **kwargs)
    except (errors.LodevecError, ValueError, OSError) as e:
        raise ToolError(" ".join(str(e).split()) or type(e).__name__) from None


def build_server(tools: SearchTools, name: str = "lodevec"):
    """An ``MCPServer`` whose tools call ``tools``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    from .. import __version__

    server = MCPServer(name, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def search(
        query: Annotated[str, Field(description="what to look for, in natural language")],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="number of results")] = 8,
        mode: Annotated[Literal["vector", "hybrid", "fts"], Field(
            description="vector: by meaning; hybrid: meaning + keywords (exact names, "
                        "error strings); fts: keywords only")] = "vector",
        path: Annotated[str | None, Field(
            description="only files under this folder/file, or matching a glob "
                        "('*.py', 'src/**/*.md')")] = None,
        where: Annotated[str | None, Field(
            description="advanced: a SQL filter on the columns source, chunk, metadata, "
                        "e.g. \"source LIKE '%test%'\"")] = None,
        full_text: Annotated[bool, Field(description="include each chunk's full text")] = False,
    ) -> dict[str, Any]:
        return _call(tools.search, query, k=k, mode=mode, path=path, where=where,
                     full_text=full_text)

    def index(
        paths: Annotated[list[str], Field(min_length=1, description="files and folders")],
        prune: Annotated[bool, Field(
            description="remove chunks of files that vanished under these folders")] = True,
    ) -> dict[str, Any]:
        return _call(tools.index, paths, prune=prune)

    def status(
        check_stale: Annotated[bool, Field(
            description="compare indexed files with the disk")] = True,
        max_files: Annotated[int, Field(ge=1, le=100_000,
                                        description="at most this many files compared")] = 500,
    ) -> dict[str, Any]:
        return _call(tools.status, check_stale=check_stale, max_files=max_files)

    def list_sources(
        path: Annotated[str | None, Field(description="folder/file prefix or glob")] = None,
        limit: Annotated[int, Field(ge=1, le=10_000, description="most files listed")] = 200,
    ) -> dict[str, Any]:
        return _call(tools.list_sources, path=path, limit=limit)

    def get(
        id: Annotated[str | None, Field(description="a chunk id from search results")] = None,
        path: Annotated[str | None, Field(description="an indexed file")] = None,
        max_chunks: Annotated[int, Field(ge=1, le=1000,
                                         description="most chunks of the file")] = 50,
    ) -> dict[str, Any]:
        return _call(tools.get, id=id, path=path, max_chunks=max_chunks)

    server.add_tool(search, description=SEARCH, annotations=read_only)
    server.add_tool(index, description=INDEX,
                    annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                                idempotentHint=True, openWorldHint=False))
    server.add_tool(status, description=STATUS, annotations=read_only)
    server.add_tool(list_sources, description=LIST_SOURCES, annotations=read_only)
    server.add_tool(get, description=GET, annotations=read_only)
    return server


def run_stdio(server) -> None:
    import anyio

    anyio.run(server.run_stdio_async)


def run_http(server, host: str, port: int) -> None:
    """Streamable HTTP at ``http://host:port/mcp``."""
    import anyio
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    print(f"lodevec mcp: listening on http://{_url_host(host)}:{port}/mcp", file=sys.stderr,
          flush=True)
    anyio.run(uvicorn.Server(config).serve)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_http_address(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = addr.strip().rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 < n < 65536:
        raise errors.InputError(f"--http: expected HOST:PORT, e.g. 127.0.0.1:8765, got {addr!r}")
    return host or "127.0.0.1", n


def check_http(http: str | None, insecure: bool = False) -> tuple[str, int] | None:
    """The (host, port) to listen on, or None for stdio.

    Raises:
        InputError: a bad address, or a non-loopback one without ``insecure`` (the MCP
            server has no authentication).
    """
    address = parse_http_address(http) if http else None
    if address and address[0] not in _LOOPBACK and not insecure:
        raise errors.InputError(
            f"lodevec mcp has no authentication: listen on a loopback address "
            f"(127.0.0.1:{address[1]}) or pass --insecure to listen on {address[0]}")
    return address


def run(session, *, http: str | None = None, watch: list[str] | None = None,
        insecure: bool = False, chunk_tokens: int = 256, overlap: int = 32) -> None:
    """Serve ``session`` over stdio (or streamable HTTP at ``http``) until the client
    goes away; with ``watch``, keep those paths indexed meanwhile (a background thread).

    Raises:
        InputError: see :func:`check_http`; a watched path that does not exist.
    """
    address = check_http(http, insecure)
    tools = SearchTools(session, chunk_tokens=chunk_tokens, overlap=overlap)
    handle = None
    if watch:
        from ..ingest.watch import Watcher

        handle = Watcher(session, watch, chunk_tokens=chunk_tokens, overlap=overlap,
                         lock=tools.write_lock).start()
        tools.watch = handle
    server = build_server(tools)
    try:
        if address:
            run_http(server, *address)
        else:
            run_stdio(server)
    finally:
        if handle is not None:
            handle.stop()
