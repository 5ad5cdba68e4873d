"""The built tokenizer, kept per vocabulary so a start-up does not rebuild it.

Building the WordPiece tokenizer from a GGUF vocabulary (undoing the phantom-space
form of 30k+ tokens, then the ``tokenizers`` model) costs more at every start than
loading its serialised form.  The serialised tokenizer is kept in
``<cache>/tokenizers/`` (``cache``: :func:`lodevec.settings.cache_dir`) under a name
made of the vocabulary's digest (:func:`lodevec.text.tokenizer.vocab_digest`: the
sha256 of everything the build reads from the model file), this module's format and
the ``tokenizers`` version, so another vocabulary, another way of building or another
library version never reads it.  (Keying by the whole file's sha256 would hash a
45-140 MB file for commands that need no digest, such as ``embed --no-cache``.)  The
file starts with one line naming the digest and the sha256 of the JSON that follows:
a file whose line or checksum does not match, or that the library cannot load, is not
trusted but rebuilt and rewritten.  Nothing fails when the cache cannot be written:
the tokenizer is built every time instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers import __version__ as _TOKENIZERS_VERSION

from .. import settings

__all__ = ["cached_tokenizer", "cache_path", "FORMAT"]

#: bump when :class:`~lodevec.text.tokenizer.WordPieceTokenizer` builds differently
FORMAT = "1"
_MAGIC = "lodevec-tokenizer"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def cache_path(digest: str) -> Path:
    """Where the tokenizer of the vocabulary with digest ``digest`` is kept."""
    return (settings.cache_dir() / "tokenizers"
            / f"{digest}.v{FORMAT}.tokenizers-{_TOKENIZERS_VERSION}.json")


def _load(path: Path, digest: str) -> Tokenizer | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head, sep, body = raw.partition(b"\n")
    parts = head.decode("ascii", "replace").split(" ")
    if (not sep or len(parts) != 4 or parts[0] != _MAGIC or parts[1] != FORMAT
            or parts[2] != digest or parts[3] != hashlib.sha256(body).hexdigest()):
        return None
    try:
        return Tokenizer.from_str(body.decode("utf-8"))
    except Exception:  # noqa: BLE001 (whatever the library rejects is rebuilt)
        return None


def _store(path: Path, digest: str, tk: Tokenizer) -> None:
    body = tk.to_str().encode("utf-8")
    head = f"{_MAGIC} {FORMAT} {digest} {hashlib.sha256(body).hexdigest()}\n".encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(head + body)
        os.replace(tmp, path)
    except OSError:  # a read-only cache: built every time
        pass


def cached_tokenizer(digest: str | None, build: Callable[[], Tokenizer]) -> Tokenizer:
    """The tokenizer of the vocabulary with sha256 ``digest``: loaded from the cache when
    a valid entry is there, else ``build()`` and stored (``digest`` None: always built)."""
    if digest is None or not _SHA256_RE.match(digest):
        return build()
    path = cache_path(digest)
    tk = _load(path, digest)
    if tk is None:
        tk = build()
        _store(path, digest, tk)
    return tk
