"""Token-sized chunks of a text made of whole lines, so every chunk has line numbers.

A chunk is a run of whole lines holding at most ``chunk_tokens`` word pieces; the next
chunk repeats the last lines of the one before that fit in ``overlap`` pieces.  A
single line longer than a chunk (minified code, a paragraph without breaks) is cut
between words (a gap between two pieces), and between pieces only in a line without
any.  Blank lines at either end of a chunk are left out; the first line keeps its
indentation.
"""

from __future__ import annotations

from bisect import bisect_right


def chunk_spans(text: str, offsets: list[tuple[int, int]], chunk_tokens: int, overlap: int
                ) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the chunks of ``text`` (see the module).

    Args:
        text: the whole text.
        offsets: each word piece's ``(start, end)`` character span, in order.
        chunk_tokens: most pieces per chunk.
        overlap: pieces (whole lines of them) repeated from the previous chunk.
    """
    if not offsets:
        return [_whole(text)] if text.strip() else []
    if len(offsets) <= chunk_tokens:
        return [(_line_start_if_indent(text, offsets[0][0]), offsets[-1][1])]
    units = _units(text, offsets, chunk_tokens)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j, n = i, units[i][1] - units[i][0]
        while j + 1 < len(units) and n + units[j + 1][1] - units[j + 1][0] <= chunk_tokens:
            j += 1
            n += units[j][1] - units[j][0]
        t0, t1 = units[i][0], units[j][1]
        spans.append((_line_start_if_indent(text, offsets[t0][0]), offsets[t1 - 1][1]))
        if j == len(units) - 1:
            break
        # the next chunk starts at the earliest unit after i whose tail fits the overlap
        # and leaves room for the unit after j (so every chunk reaches past the last)
        k, tail, after = j + 1, 0, units[j + 1][1] - units[j + 1][0]
        while k - 1 > i:
            size = units[k - 1][1] - units[k - 1][0]
            if tail + size > overlap or tail + size + after > chunk_tokens:
                break
            k -= 1
            tail += size
        i = k
    return spans


def chunk_text(text: str, offsets: list[tuple[int, int]], chunk_tokens: int, overlap: int
               ) -> list[str]:
    """The chunks of ``text`` as strings (see :func:`chunk_spans`)."""
    return [text[a:b] for a, b in chunk_spans(text, offsets, chunk_tokens, overlap)]


def _whole(text: str) -> tuple[int, int]:
    stripped = text.lstrip()
    a = len(text) - len(stripped)
    return _line_start_if_indent(text, a), len(text.rstrip())


def _line_start_if_indent(text: str, a: int) -> int:
    """``a`` moved back to its line's start when only blanks precede it there."""
    ls = text.rfind("\n", 0, a) + 1
    return ls if not text[ls:a].strip() else a


def _units(text: str, offsets: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Token ranges ``[t0, t1)``: one per non-blank line, a line of more than ``limit``
    pieces cut into several (at word gaps when it has them)."""
    line_starts = [0]
    pos = text.find("\n")
    while pos != -1:
        line_starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    units: list[tuple[int, int]] = []
    t0, cur = 0, bisect_right(line_starts, offsets[0][0])
    for t in range(1, len(offsets) + 1):
        line = bisect_right(line_starts, offsets[t][0]) if t < len(offsets) else -1
        if line != cur:
            units.extend(_split_long(offsets, t0, t, limit))
            t0, cur = t, line
    return units


def _split_long(offsets, t0: int, t1: int, limit: int) -> list[tuple[int, int]]:
    out = []
    while t1 - t0 > limit:
        cut = t0 + limit
        # the last word gap in the window's second half, else a hard cut
        for c in range(t0 + limit, t0 + limit // 2, -1):
            if offsets[c][0] > offsets[c - 1][1]:
                cut = c
                break
        out.append((t0, cut))
        t0 = cut
    out.append((t0, t1))
    return out
