"""Search hits printed the way grep and ripgrep print matches.

``path:LINE: snippet`` per hit, ``LINE`` being the line of the file shown: of the
chunk's lines, the one sharing the most words with the query (a cheap lexical overlap:
the vector found the chunk, the words pick its line), else the chunk's first line.
``-C N`` adds N lines around it read from the file (``path-LINE-`` as rg, groups
separated by ``--``); ``--scores`` adds the score as a trailing column.  Records from
``index --input`` print ``source#id``; rows indexed before line numbers were stored
print ``path:`` alone (the caller says so once, on stderr).

Colour (rg's: path magenta, line number green, matched words bold red) only on a
terminal, unless ``--color always|never``; ``NO_COLOR`` (any value) turns ``auto`` off.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: words too common to pick a line by
_STOP = frozenset("""a an and are as at be but by can do does for from how i if in into is it
its me my no not of on or so that the their then there these this to was what when where which
who why will with you your""".split())
#: characters of a snippet line shown (the rest elided)
SNIPPET_CHARS = 200


def use_color(choice: str, stream) -> bool:
    """``--color``: ``always``, ``never`` or ``auto`` (a terminal and no ``NO_COLOR``)."""
    if choice == "always":
        return True
    if choice == "never" or "NO_COLOR" in os.environ:
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class Palette:
    def __init__(self, on: bool):
        self.on = on

    def _sgr(self, code: str, s: str) -> str:
        return f"\x1b[{code}m{s}\x1b[0m" if self.on and s else s

    def path(self, s: str) -> str:
        return self._sgr("35", s)

    def line(self, s: str) -> str:
        return self._sgr("32", s)

    def match(self, s: str) -> str:
        return self._sgr("1;31", s)

    def dim(self, s: str) -> str:
        return self._sgr("2", s)


def query_words(query: str) -> set[str]:
    return {w for w in (m.group().lower() for m in _WORD.finditer(query))
            if w not in _STOP and len(w) > 1}


def best_line(lines: list[str], words: set[str]) -> int:
    """Index of the line sharing the most query words (a word stem of 4+ letters counts,
    so "rotate" finds "rotating"); ties go to the earlier line; no overlap: the first
    non-blank line."""
    best, best_score = None, 0
    stems = {w[:4] for w in words if len(w) >= 4}
    for i, line in enumerate(lines):
        found = {m.group().lower() for m in _WORD.finditer(line)}
        score = 2 * len(found & words) + len({f[:4] for f in found if len(f) >= 4} & stems)
        if score > best_score:
            best, best_score = i, score
    if best is not None:
        return best
    return next((i for i, line in enumerate(lines) if line.strip()), 0)


def highlight(line: str, words: set[str], pal: Palette) -> str:
    if not pal.on or not words:
        return line
    return _WORD.sub(lambda m: pal.match(m.group()) if m.group().lower() in words else m.group(),
                     line)


def clip(line: str) -> str:
    line = line.rstrip("\r\n").replace("\t", "    ")
    return line if len(line) <= SNIPPET_CHARS else line[:SNIPPET_CHARS].rstrip() + "…"


@dataclass
class Shown:
    """One printed hit: where (``label`` and ``line``) and the lines to print."""

    label: str
    line: int | None
    text: str


class HitPrinter:
    """Prints hits grep-style to ``out``.

    Args:
        out: the stream.
        query: for choosing and highlighting lines.
        color: a :class:`Palette`.
        context: ``-C N`` lines before and after.
        scores: add the score column.
        read_file: ``path -> list of lines or None``, for context lines.
    """

    def __init__(self, out, query: str, pal: Palette, context: int = 0, scores: bool = False,
                 read_file=None):
        self.out, self.pal, self.context, self.scores = out, pal, context, scores
        self.words = query_words(query)
        self.read_file = read_file or (lambda path: None)
        self._printed = 0

    def hit(self, label: str, path: str | None, line_start: int | None, text: str,
            score: float) -> None:
        """Print one hit: ``label`` is the display path (or ``source#id``); ``path`` the
        file to read context from; ``line_start`` the chunk's first line (None: unknown)."""
        lines = text.split("\n")
        i = best_line(lines, self.words)
        sep = self.pal.dim("--") + "\n" if self.context and self._printed else ""
        tail = f"  {self.pal.dim(f'{score:.4f}')}" if self.scores else ""
        if line_start is None:
            self.out.write(f"{sep}{self.pal.path(label)}: "
                           f"{highlight(clip(lines[i]), self.words, self.pal)}{tail}\n")
            self._printed += 1
            return
        lineno = line_start + i
        before, after = self._context(path, lineno, lines, i)
        parts = [sep]
        for n, s in before:
            parts.append(f"{self.pal.path(label)}-{self.pal.line(str(n))}- {clip(s)}\n")
        parts.append(f"{self.pal.path(label)}:{self.pal.line(str(lineno))}: "
                     f"{highlight(clip(lines[i]), self.words, self.pal)}{tail}\n")
        for n, s in after:
            parts.append(f"{self.pal.path(label)}-{self.pal.line(str(n))}- {clip(s)}\n")
        self.out.write("".join(parts))
        self._printed += 1

    def _context(self, path, lineno: int, chunk_lines: list[str], i: int):
        if not self.context:
            return [], []
        file_lines = self.read_file(path) if path else None
        c = self.context
        if file_lines is not None and lineno <= len(file_lines):
            lo, hi = max(1, lineno - c), min(len(file_lines), lineno + c)
            return ([(n, file_lines[n - 1]) for n in range(lo, lineno)],
                    [(n, file_lines[n - 1]) for n in range(lineno + 1, hi + 1)])
        # the file is gone or shorter now: the chunk's own lines
        first = lineno - i
        lo, hi = max(0, i - c), min(len(chunk_lines) - 1, i + c)
        return ([(first + j, chunk_lines[j]) for j in range(lo, i)],
                [(first + j, chunk_lines[j]) for j in range(i + 1, hi + 1)])


def file_lines_reader(encoding_of=None):
    """A cached ``path -> lines`` reader for context (None when unreadable)."""
    cache: dict[str, list[str] | None] = {}

    def read(path: str) -> list[str] | None:
        if path not in cache:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                enc = (encoding_of(path) if encoding_of else None) or "utf-8"
                cache[path] = data.decode(enc, errors="replace").split("\n")
            except (OSError, LookupError):
                cache[path] = None
        return cache[path]
    return read
