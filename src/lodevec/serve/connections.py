"""Connections that cannot starve the server: read timeouts, a connection cap, quiet
accept errors and a shutdown that drops stalled clients.

uvicorn's h11 protocol times out only idle kept-alive connections; a client that
connects and sends nothing, or sends half its headers or half its body, holds a
socket (and a file descriptor) forever.  ``guarded_protocol`` subclasses it with:

- a *header* deadline: the request line and headers must arrive within
  ``header_timeout`` seconds of the connection (or of the first byte of a kept-alive
  request); otherwise 408 and close;
- a *body* idle timeout: while the app waits for the body, ``body_timeout`` seconds
  without a byte close the connection (the handler sees a disconnect, not a hang);
- a connection cap: beyond ``max_connections`` the connection idle the longest (no
  request in progress) is closed to make room; with none idle, 503 and close.  The cap
  is kept below the process's file limit, so the accept loop never runs out of
  descriptors because of clients alone.

``quiet_accept_errors`` rate-limits the event loop's ``accept() out of system
resource`` reports (asyncio reports every attempt, with a traceback) to one line per
interval; ``drop_stalled`` closes connections still sending a body when the graceful
shutdown is about to give up, so their handlers end with a disconnect instead of a
cancelled task's traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["connection_cap", "drop_stalled", "guarded_protocol", "quiet_accept_errors",
           "widen_listen_queue"]

log = logging.getLogger("lodevec.server")

_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n")
_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"retry-after: 1\r\ncontent-length: 24\r\nconnection: close\r\n\r\n"
        b"too many connections\r\n\r\n")

#: descriptors kept free for the model, the database's files and the log
_FD_RESERVE = 64


def connection_cap(max_connections: int) -> tuple[int, int]:
    """``(connections, accepts per loop turn)`` that fit the file limit.

    asyncio accepts up to ``backlog`` connections per turn of the loop before any of
    them is admitted (and before an evicted one's descriptor is freed), so a burst
    needs room beyond the cap: the accepts per turn are bounded too, and the cap is
    lowered to leave a few turns' worth, descriptors open now and a reserve free.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections, 128
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 32
    room = max(64, soft - open_now - _FD_RESERVE)
    batch = max(8, min(128, room // 8))
    cap = max(8, room - 4 * batch)
    if cap < max_connections:
        log.warning("at most %d connections (the file limit is %d; --max-connections %d)",
                    cap, soft, max_connections)
    return min(max_connections, cap), batch


def widen_listen_queue(servers, backlog: int = 2048) -> None:
    """Let the kernel queue ``backlog`` pending connections on each listening socket
    (``listen`` again; asyncio still accepts only its smaller batch per turn)."""
    for server in servers:
        for tsock in getattr(server, "sockets", None) or ():
            with contextlib.suppress(OSError):
                with socket.socket(fileno=os.dup(tsock.fileno())) as dup:
                    dup.listen(backlog)


def _in_request(conn: Any) -> bool:
    """A request's headers have arrived and its response is not complete."""
    cycle = conn.cycle
    return cycle is not None and not cycle.response_complete


def guarded_protocol(*, max_connections: int, header_timeout: float, body_timeout: float):
    """An ``H11Protocol`` subclass with the deadlines and the cap (see the module)."""

    class Guarded(H11Protocol):
        #: open connections not yet dropped, and those without a request in progress,
        #: the longest idle first (one event loop: no locks)
        live = 0
        idle: dict[Guarded, None] = {}

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None
            self._phase = ""  # "header", "body" or "" (no deadline)
            self._counted = False

        # -- the cap
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            cls = type(self)
            cls.live += 1
            self._counted = True
            cls.idle[self] = None
            if cls.live > max_connections:
                victim = next((c for c in cls.idle if c is not self), None)
                if victim is None:
                    self._drop(_503)
                    return
                victim._drop(b"")
            self._arm("header", header_timeout)

        def _forget(self) -> None:
            if self._counted:
                self._counted = False
                type(self).live -= 1
            type(self).idle.pop(self, None)

        def _drop(self, answer: bytes) -> None:
            self._forget()
            self._cancel()
            if not self.transport.is_closing():
                if answer:
                    self.transport.write(answer)
                self.transport.close()

        # -- the deadlines
        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase = ""

        def _arm(self, phase: str, seconds: float) -> None:
            self._cancel()
            self._phase = phase
            self._timer = self.loop.call_later(seconds, self._expired)

        def _expired(self) -> None:
            self._timer = None
            if self._phase == "body" and self.flow.read_paused:
                self._arm("body", body_timeout)  # the app is slow to read, not the client
                return
            self._drop(_408 if self._phase == "header" and not _in_request(self) else b"")

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if not self._counted or self.transport.is_closing():
                return
            if self.cycle is not cycle or self._phase == "body":
                self._after_headers()
            elif not _in_request(self) and self._phase != "header":
                self._arm("header", header_timeout)  # the first byte of a kept-alive request

        def _after_headers(self) -> None:
            cycle = self.cycle
            if _in_request(self):
                type(self).idle.pop(self, None)
            if _in_request(self) and cycle.more_body:
                self._arm("body", body_timeout)
            else:
                self._cancel()

        def on_response_complete(self) -> None:
            self._cancel()
            if self._counted:
                type(self).idle.pop(self, None)
                type(self).idle[self] = None  # the most recently idle last
            super().on_response_complete()
            if _in_request(self):  # a pipelined request started
                self._after_headers()

        def connection_lost(self, exc) -> None:
            self._forget()
            self._cancel()
            super().connection_lost(exc)

        def stalled(self) -> bool:
            """Still sending the body of a request (or its headers)."""
            return not _in_request(self) or bool(self.cycle.more_body)

    Guarded.__name__ = Guarded.__qualname__ = "GuardedH11Protocol"
    return Guarded


def drop_stalled(connections) -> int:
    """Close the connections still sending a request; returns how many."""
    n = 0
    for conn in list(connections):
        stalled = getattr(conn, "stalled", None)
        if stalled is not None and stalled() and not conn.transport.is_closing():
            conn._drop(b"")
            n += 1
    return n


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> None:
    """Report the loop's ``accept()`` resource errors (EMFILE and the like) in one line
    per ``interval`` seconds, with a count, instead of a traceback per attempt."""
    state = {"next": 0.0, "count": 0}
    previous = loop.get_exception_handler()

    def handler(loop, context: dict) -> None:
        if "accept()" not in str(context.get("message", "")):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        state["count"] += 1
        now = time.monotonic()
        if now >= state["next"]:
            exc = context.get("exception")
            log.warning("cannot accept connections: %s (%d time(s) since the last report; "
                        "raise the file limit or lower --max-connections)",
                        getattr(exc, "strerror", None) or exc, state["count"])
            state["next"], state["count"] = now + interval, 0

    loop.set_exception_handler(handler)
