"""Running the app: ``serve`` (uvicorn until SIGINT/SIGTERM), ``BackgroundServer`` (a
daemon thread), and the options ``lodevec serve`` adds to its parser."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import threading
import time

from starlette.applications import Starlette

from .. import errors, settings
from ..embedding.embedder import Embedder
from ..settings import DEFAULT_COLLECTION
from .app import create_app
from .connections import (
    connection_cap,
    drop_stalled,
    guarded_protocol,
    quiet_accept_errors,
    widen_listen_queue,
)
from .limits import Limits
from .options import add_arguments  # noqa: F401  (re-exported: the parser's options)
from .security import Security, read_key_file

__all__ = ["BackgroundServer", "add_arguments", "limits_from_args", "parse_addr", "security_from_args",
           "serve", "serve_from_args"]


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``":port"``, ``"port"``, ``"[::1]:port"``) to ``(host, port)``.

    Raises:
        InputError: not an address.
    """
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = "", addr
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.InputError(f"--addr {addr!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def _make_server(app: Starlette, config):
    """A ``uvicorn.Server`` that marks the app as stopping on SIGINT/SIGTERM, so requests
    arriving on kept-alive connections get 503 while in-flight ones finish; accept errors
    are reported once per interval, and clients still sending a request when the grace
    period is about to end are disconnected (their handlers end, nothing is cancelled)."""
    import asyncio

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app.state.service.begin_shutdown()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            quiet_accept_errors(asyncio.get_running_loop())
            await super().startup(sockets)
            widen_listen_queue(self.servers)

        async def shutdown(self, sockets=None):
            grace = self.config.timeout_graceful_shutdown or 0.0
            handle = asyncio.get_running_loop().call_later(
                max(0.0, grace - min(1.0, grace / 2)), drop_stalled, self.server_state.connections)
            try:
                await super().shutdown(sockets)
            finally:
                handle.cancel()

    return Server(config)


def _config(app: Starlette, host: str, port: int, log_level: str, access_log: bool,
            graceful_timeout: float):
    import uvicorn

    lim = app.state.service.limits
    cap, batch = connection_cap(lim.max_connections)
    protocol = guarded_protocol(max_connections=cap, header_timeout=lim.header_timeout,
                                body_timeout=lim.body_timeout)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                          lifespan="on", timeout_graceful_shutdown=graceful_timeout,
                          timeout_keep_alive=lim.keep_alive, server_header=False, http=protocol,
                          backlog=batch)


def serve(embedder: Embedder, db_uri: str | None, host: str = "127.0.0.1", port: int = 8080, *,
          collection: str = DEFAULT_COLLECTION, dim: int | None = None, limits: Limits | None = None,
          security: Security | None = None, log_level: str = "info", access_log: bool = False,
          graceful_timeout: float = 30.0) -> None:
    """Serve until SIGINT / SIGTERM, then shut down gracefully.

    On the signal the server stops accepting connections and answers 503 to new
    requests on open ones; in-flight requests finish (up to ``graceful_timeout``
    seconds), the batcher drains and store writes complete before it returns.

    Args:
        embedder: the embedder to serve.
        db_uri: LanceDB directory, or ``None`` for embeddings only.
        host: interface to bind; a non-loopback one needs an API key in ``security``
            (or ``Security(insecure=True)``).
        port: TCP port (0: any free one).
        collection: collection name.
        dim: dimension of a newly created collection.
        limits: request limits and batching settings.
        security: API keys, CORS origins, allowed hosts (default: none, CORS off).
        log_level: uvicorn log level.
        access_log: log every request.
        graceful_timeout: seconds in-flight requests get after the signal.

    Returns:
        After the graceful shutdown that a SIGINT / SIGTERM started.

    Raises:
        InputError: ``host`` is not a loopback address and there is no API key.
        ModelMismatchError: the collection was made with another model (opened before
            the port is bound, so nothing is served).
        StoreError: the database cannot be opened.
        SystemExit: uvicorn could not start (e.g. the port is in use; logged by uvicorn).
    """
    security = security or Security()
    security.check_bind(host)
    app = create_app(embedder, db_uri, collection, limits, dim, security)
    svc = app.state.service
    if db_uri is not None:
        svc.open_store()
    server = _make_server(app, _config(app, host, port, log_level, access_log, graceful_timeout))
    try:
        with _signals_return():
            server.run()
    except SystemExit:
        if svc.startup_error is not None:
            raise svc.startup_error from None
        raise


@contextlib.contextmanager
def _signals_return():
    """Make ``serve`` return after a graceful SIGINT/SIGTERM shutdown.

    uvicorn re-raises the signal it handled once it has shut down, which with the
    default handlers kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT).
    With no-op handlers installed underneath uvicorn's own, the re-raise does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks, notebooks).

    Args:
        app: from ``create_app``.
        host: interface (a non-loopback one needs an API key in the app's ``Security``).
        port: 0 picks a free port (see ``port`` after ``start``).
        log_level: uvicorn log level.
        graceful_timeout: seconds in-flight requests get on ``stop``.

    Example:
        >>> with BackgroundServer(create_app(emb)) as srv:
        ...     httpx.post(f"{srv.url}/v1/embeddings", json={"input": "hi"})
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning", graceful_timeout: float = 30.0):
        app.state.service.security.check_bind(host)
        self.app = app
        self.host = host
        # bound here so the port is known (and free) before the thread starts
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.server = _make_server(
            app, _config(app, host, self.port, log_level, False, graceful_timeout))
        self._thread = threading.Thread(target=self._run, name="lodevec-server", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        """Start and wait until the server accepts connections.

        Raises:
            RuntimeError: startup failed or timed out (the cause is chained).
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                cause = self.app.state.service.startup_error or self._error
                self.stop()
                raise RuntimeError(f"the server did not start: {cause!r}") from cause
            time.sleep(0.01)
        return self

    def begin_stop(self) -> None:
        """Start the graceful shutdown and return at once (as SIGTERM would)."""
        self.app.state.service.begin_shutdown()
        self.server.should_exit = True

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down gracefully and wait for the thread."""
        self.begin_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------ command line
def limits_from_args(args: argparse.Namespace) -> Limits:
    """``Limits`` from the options of ``add_arguments``."""
    return Limits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                  max_inputs=args.max_inputs, max_body_bytes=int(args.max_body_mb * 2**20),
                  max_queue=args.max_queue, truncate=False if args.no_truncate else None,
                  max_connections=args.max_connections, header_timeout=args.header_timeout,
                  body_timeout=args.body_timeout, keep_alive=args.keep_alive)


def _keys(args: argparse.Namespace, option: str, default: str | None) -> tuple[str, ...]:
    """The keys of ``--OPTION`` and ``--OPTION-file``; the environment's if neither is given."""
    keys = list(getattr(args, option, None) or [])
    for path in getattr(args, f"{option}_file", None) or []:
        keys += read_key_file(path)
    if not keys and default:
        keys = [default]
    return tuple(keys)


def security_from_args(args: argparse.Namespace) -> Security:
    """``Security`` from the options of ``add_arguments`` and ``LODEVEC_API_KEY`` /
    ``LODEVEC_READ_API_KEY``.

    Raises:
        InputError: a key file cannot be read, a key is empty, an origin is malformed.
    """
    return Security(api_keys=_keys(args, "api_key", settings.api_key()),
                    read_keys=_keys(args, "read_api_key", settings.read_api_key()),
                    cors_origins=tuple(getattr(args, "cors_origin", None) or ()),
                    allowed_hosts=tuple(getattr(args, "allow_host", None) or ()),
                    insecure=bool(getattr(args, "insecure", False)))


def serve_from_args(embedder: Embedder, db_uri: str | None, args: argparse.Namespace) -> None:
    """``serve`` with the options of ``add_arguments`` (what ``lodevec serve`` calls)."""
    host, port = parse_addr(args.addr)
    serve(embedder, db_uri, host, port, collection=args.collection, dim=args.dim,
          limits=limits_from_args(args), security=security_from_args(args),
          log_level=args.log_level, access_log=args.access_log,
          graceful_timeout=args.graceful_timeout)
