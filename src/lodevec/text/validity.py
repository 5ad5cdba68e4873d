"""What counts as a text worth embedding and storing: something besides blanks and
control characters, and valid Unicode (no lone surrogates, which UTF-8 cannot
encode, so neither the tokenizer nor the store can take them)."""

from __future__ import annotations

import re

__all__ = ["is_blank", "surrogate_at"]

#: whitespace, C0/C1 controls, zero-width and byte-order marks: nothing a reader sees
_BLANK = re.compile("[\\s\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]*")
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


def is_blank(text: str) -> bool:
    """``text`` is empty or made only of whitespace and control characters."""
    # every record passes here: a text that starts with a visible character (nearly all)
    # is answered without the regex
    first = text[:1]
    if first and not (first.isspace() or first <= "\x1f" or "\x7f" <= first <= "\x9f"
                      or first in _INVISIBLE):
        return False
    return _BLANK.fullmatch(text) is not None


def surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text``, or ``None``."""
    # strict UTF-8 fails on lone surrogates and on nothing else; ASCII cannot hold one
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None
