"""Token-sized windows of a text, cut at word-piece boundaries."""

from __future__ import annotations


def chunk_text(text: str, offsets: list[tuple[int, int]], chunk_tokens: int, overlap: int
               ) -> list[str]:
    """Split ``text`` into windows of ``chunk_tokens`` word pieces overlapping by
    ``overlap``, cut at token boundaries (``offsets`` are each piece's char span).
    A window is widened to the start of its first line when that costs no tokens,
    so chunks of code and notes start at a line start more often."""
    if not offsets or len(offsets) <= chunk_tokens:
        return [text.strip()] if text.strip() else []
    step = max(1, chunk_tokens - overlap)
    chunks = []
    for start in range(0, len(offsets), step):
        end = min(start + chunk_tokens, len(offsets))
        a = offsets[start][0]
        line_start = text.rfind("\n", 0, a) + 1
        prev_end = offsets[start - 1][1] if start else 0
        if line_start >= prev_end:
            a = line_start
        b = offsets[end - 1][1]
        piece = text[a:b].strip()
        if piece:
            chunks.append(piece)
        if end == len(offsets):
            break
    return chunks
