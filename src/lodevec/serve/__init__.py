"""The HTTP server: OpenAI-compatible embeddings, search and documents over the library.

- ``app``: ``create_app`` and the routes table; ``handlers``: one function per route;
  ``schemas``: request parsing; ``responses``: JSON out; ``errors``: the API errors and
  the one table mapping exceptions to statuses.
- ``service``: lifecycle, the writer thread, token limits; ``batcher``: the queue that
  shares model forwards between requests; ``metrics``: counters and ``/metrics``.
- ``security``: API keys (full / read-only), the Host and Origin checks, CORS, the
  refusal to bind a non-loopback address without a key.
- ``run``: uvicorn (``serve``, ``BackgroundServer``); ``options``: the ``lodevec serve``
  options (no web framework: the CLI's parser reads them at every start).

Names load on first use, so ``from lodevec.serve import add_arguments`` imports neither
Starlette nor uvicorn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY = {
    "create_app": "app", "ERROR_TABLE": "errors", "Limits": "limits",
    "BackgroundServer": "run", "parse_addr": "run", "serve": "run", "serve_from_args": "run",
    "add_arguments": "options", "Security": "security",
}

__all__ = ["ERROR_TABLE", "BackgroundServer", "Limits", "Security", "add_arguments", "create_app",
           "parse_addr", "serve", "serve_from_args"]

if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .errors import ERROR_TABLE
    from .limits import Limits
    from .options import add_arguments
    from .run import BackgroundServer, parse_addr, serve, serve_from_args
    from .security import Security


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lodevec.serve' has no attribute {name!r}")
