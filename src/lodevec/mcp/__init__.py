"""``lodevec mcp``: semantic search for agents over the Model Context Protocol.

``tools.SearchTools`` holds the tools' logic as plain library calls; ``server`` wraps
them in an ``MCPServer`` (the ``mcp`` SDK, imported only when a server is built) and
runs stdio or streamable HTTP.
"""

from __future__ import annotations

__all__ = ["SearchTools", "build_server", "run"]


def __getattr__(name: str):
    if name == "SearchTools":
        from .tools import SearchTools

        return SearchTools
    if name in ("build_server", "run"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'lodevec.mcp' has no attribute {name!r}")
