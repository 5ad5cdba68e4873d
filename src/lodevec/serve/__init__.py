"""The HTTP server: OpenAI-compatible embeddings, search and documents over the library.

- ``app``: ``create_app`` and the routes table; ``handlers``: one function per route;
  ``schemas``: request parsing; ``responses``: JSON out; ``errors``: the API errors and
  the one table mapping exceptions to statuses.
- ``service``: lifecycle, the writer thread, token limits; ``batcher``: the queue that
  shares model forwards between requests; ``metrics``: counters and ``/metrics``.
- ``security``: API keys (full / read-only), the Host and Origin checks, CORS, the
  refusal to bind a non-loopback address without a key.
- ``run``: uvicorn (``serve``, ``BackgroundServer``) and the ``lodevec serve`` options.
"""

from __future__ import annotations

from .app import create_app
from .errors import ERROR_TABLE
from .limits import Limits
from .run import BackgroundServer, add_arguments, parse_addr, serve, serve_from_args
from .security import Security

__all__ = ["ERROR_TABLE", "BackgroundServer", "Limits", "Security", "add_arguments", "create_app",
           "parse_addr", "serve", "serve_from_args"]
