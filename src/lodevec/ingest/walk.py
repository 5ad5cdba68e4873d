"""Which files an index run reads: walking folders as git would (``.gitignore``, VCS and
cache folders skipped), and reading a file as text or saying why it is skipped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .. import errors

#: files larger than this are skipped with a note (logs, dumps, data files)
MAX_FILE_BYTES = 8 * 1024 * 1024
#: folders never walked into
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox",
             ".mypy_cache", ".pytest_cache", ".ruff_cache", ".lance"}


def _gitignore_specs(root: Path):
    """A matcher for every .gitignore under ``root`` (and the root's own parents' none)."""
    import pathspec

    specs: list[tuple[Path, pathspec.PathSpec]] = []

    def load(folder: Path) -> None:
        gi = folder / ".gitignore"
        if gi.is_file():
            try:
                lines = gi.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                return
            specs.append((folder, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(path: Path, is_dir: bool) -> bool:
        for folder, spec in specs:
            try:
                rel = path.relative_to(folder).as_posix()
            except ValueError:
                continue
            if spec.match_file(rel + ("/" if is_dir else "")):
                return True
        return False

    return load, ignored


def walk_files(paths: Iterable[str | os.PathLike], skip: Callable[[Path], bool] | None = None
               ) -> Iterator[Path]:
    """Files under ``paths`` (files given directly are always included), in sorted
    order, honouring ``.gitignore`` files and skipping VCS/cache folders."""
    for p in paths:
        root = Path(p)
        if not root.exists():
            raise errors.InputError(f"{root}: no such file or directory")
        if root.is_file():
            yield root.resolve()
            continue
        load, ignored = _gitignore_specs(root)
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            load(here)
            dirnames[:] = sorted(d for d in dirnames
                                 if d not in SKIP_DIRS and not ignored(here / d, True)
                                 and not (skip and skip(here / d)))
            for name in sorted(filenames):
                f = here / name
                if name == ".gitignore" or ignored(f, False) or not f.is_file():
                    continue
                yield f.resolve()


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 text file, (None, reason) for anything to skip."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if b"\x00" in data[:8192]:
        return None, "binary file"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 ({e.reason} at byte {e.start})"
    if not text.strip():
        return None, "empty file"
    return text, None
