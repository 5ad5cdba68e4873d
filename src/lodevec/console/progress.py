"""Index progress that tells the truth: the files are read and chunked first (a bar
over the files), then the chunks that need embedding are known and a second bar shows
them with tokens/s and an ETA.  When stderr is not a terminal, ``--progress`` prints a
one-line status every few seconds instead; ``--quiet`` (or ``--json``) prints nothing.
"""

from __future__ import annotations

import time

#: seconds between status lines when stderr is not a terminal
STATUS_EVERY = 5.0


class IndexProgress:
    """The callbacks an :class:`~lodevec.ingest.Indexer` reports to (``reading``,
    ``planned``, ``embedded``); ``mode`` is ``bar``, ``lines`` or ``off``."""

    def __init__(self, stream, mode: str, every: float = STATUS_EVERY):
        self.stream, self.mode, self.every = stream, mode, every
        self._bar = None
        self._t0 = time.monotonic()
        self._last = 0.0
        self._total = None
        self._done = 0

    @classmethod
    def for_args(cls, args, stream) -> IndexProgress:
        if getattr(args, "quiet", False) or getattr(args, "json", False):
            return cls(stream, "off")
        if hasattr(stream, "isatty") and stream.isatty():
            return cls(stream, "bar")
        return cls(stream, "lines" if getattr(args, "progress", False) else "off")

    # -- the Indexer's callbacks
    def reading(self, done: int, total: int) -> None:
        if self.mode == "bar":
            if self._bar is None:
                self._bar = self._new_bar(total, "reading", " files")
            self._bar.update(done - self._bar.n)
        elif self.mode == "lines" and (done == total or self._due()):
            self._line(f"reading files: {done}/{total}")

    def planned(self, files: int, chunks: int) -> None:
        self._total = chunks
        self._t_embed = time.monotonic()
        if self.mode == "bar":
            self.close()
            self._bar = self._new_bar(chunks, "embedding", " chunks")
        elif self.mode == "lines":
            self._line(f"{files} files read: {chunks} chunks to embed")

    def embedded(self, files: int, chunks: int, tokens: int) -> None:
        self._done = chunks
        t0 = getattr(self, "_t_embed", self._t0)
        elapsed = time.monotonic() - t0
        rate = tokens / elapsed if elapsed > 0 else 0.0
        if self.mode == "bar" and self._bar is not None:
            self._bar.update(chunks - self._bar.n)
            self._bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
        elif self.mode == "lines" and self._due():
            total = self._total
            eta = ""
            if total and chunks and elapsed > 0:
                eta = f", ETA {_clock((total - chunks) * elapsed / chunks)}"
            of = f"/{total}" if total is not None else ""
            self._line(f"embedded {chunks}{of} chunks, {rate:,.0f} tokens/s, "
                       f"{_clock(elapsed)} elapsed{eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- internals
    def _new_bar(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                    leave=False)

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        return False

    def _line(self, msg: str) -> None:
        self.stream.write(f"lodevec index: {msg}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
