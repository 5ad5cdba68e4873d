"""Pipes as ripgrep treats them: a reader that went away (``| head -1``) ends the
command quietly with exit 0, and ``-`` as the query reads it from stdin."""

from __future__ import annotations

import os
import sys


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again
    (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def read_query(query: str, stdin) -> str:
    """``query``, or stdin's text when it is ``-``."""
    if query != "-":
        return query
    return stdin.read().strip()
