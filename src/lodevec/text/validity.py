"""What counts as a text worth embedding and storing: something besides blanks and
control characters, and valid Unicode (no lone surrogates, which UTF-8 cannot
encode, so neither the tokenizer nor the store can take them)."""

from __future__ import annotations

import re

__all__ = ["is_blank", "surrogate_at"]

#: whitespace, C0/C1 controls, zero-width and byte-order marks: nothing a reader sees
_BLANK = re.compile("[\\s\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]*")
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_blank(text: str) -> bool:
    """``text`` is empty or made only of whitespace and control characters."""
    return _BLANK.fullmatch(text) is not None


def surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text``, or ``None``."""
    m = _SURROGATE.search(text)
    return None if m is None else m.start()
