"""Which files an index run reads: walking folders as ripgrep would (``.gitignore``,
``.ignore`` and ``.lodevecignore`` honoured, hidden files and VCS/cache folders skipped,
``--glob`` / ``--type`` selections), confined to the tree, and reading a file as text
(UTF-8, else the encoding charset-normalizer detects) or saying why it is skipped.

Confinement: a symbolic link is followed only to a regular file inside the root it was
found under (``follow_symlinks=True`` lifts that, but never into /proc, /sys or /dev);
FIFOs, sockets and devices are never opened (opening a FIFO blocks); a name that is not
valid UTF-8 cannot be stored and is skipped with a note.  Paths are recorded as the
walk reached them (the root made absolute, then the names below it), never as a
link's target, so removing a link lets prune remove its rows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .. import errors

#: files larger than this are skipped with a note (logs, dumps, data files)
MAX_FILE_BYTES = 8 * 1024 * 1024
#: folders never walked into
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox",
             ".mypy_cache", ".pytest_cache", ".ruff_cache", ".lance"}
#: the ignore files honoured in every folder (gitignore syntax), in rg's order
IGNORE_FILES = (".gitignore", ".ignore", ".lodevecignore")
#: ``--type`` names, as ripgrep's (a few): the file globs each stands for
FILE_TYPES = {
    "c": ["*.c", "*.h"], "cpp": ["*.cc", "*.cpp", "*.cxx", "*.hh", "*.hpp", "*.hxx", "*.h"],
    "css": ["*.css", "*.scss"], "cython": ["*.pyx", "*.pxd", "*.pxi"], "go": ["*.go"],
    "html": ["*.html", "*.htm"], "java": ["*.java"], "js": ["*.js", "*.jsx", "*.mjs", "*.cjs"],
    "json": ["*.json", "*.jsonl"], "md": ["*.md", "*.markdown", "*.mdx"], "py": ["*.py", "*.pyi"],
    "rb": ["*.rb"], "rst": ["*.rst"], "rust": ["*.rs"], "sh": ["*.sh", "*.bash", "*.zsh"],
    "sql": ["*.sql"], "tex": ["*.tex"], "toml": ["*.toml"], "ts": ["*.ts", "*.tsx"],
    "txt": ["*.txt"], "yaml": ["*.yaml", "*.yml"],
}
#: kernel and device trees: never read, even through a followed link
FORBIDDEN = (Path("/proc"), Path("/sys"), Path("/dev"))

#: called with (path for display, reason) for every entry the walk skips
OnSkip = Callable[[str, str], None]


class Selection:
    """Which files of a walked folder are indexed (files named directly always are).

    Args:
        hidden: also walk hidden files and folders (names starting with ``.``).
        globs: gitignore-style patterns on the path below the root; ``!pat`` excludes.
            With any include pattern only files matching one are indexed.
        types: names from :data:`FILE_TYPES` (``py``, ``md``, ...): their globs are
            included.
        ignore_files: honour ``.gitignore``, ``.ignore`` and ``.lodevecignore``.

    Raises:
        InputError: an unknown type or an empty pattern.
    """

    def __init__(self, hidden: bool = False, globs: Iterable[str] = (), types: Iterable[str] = (),
                 ignore_files: bool = True):
        import pathspec

        self.hidden, self.ignore_files = hidden, ignore_files
        include, exclude = [], []
        for g in globs:
            g = g.strip()
            neg = g.startswith("!")
            pat = g[1:].strip() if neg else g
            if not pat:
                raise errors.InputError(f"--glob {g!r} is empty; give a pattern such as '*.md' or '!build/'")
            (exclude if neg else include).append(pat)
        for t in types:
            if t not in FILE_TYPES:
                raise errors.InputError(f"unknown --type {t!r}; choose from {', '.join(sorted(FILE_TYPES))}")
            include += FILE_TYPES[t]
        self._include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self._exclude = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None

    def keep_dir(self, rel: str, name: str) -> bool:
        if not self.hidden and name.startswith("."):
            return False
        return self._exclude is None or not self._exclude.match_file(rel + "/")

    def keep_file(self, rel: str, name: str) -> bool:
        if not self.hidden and name.startswith("."):
            return False
        if self._exclude is not None and self._exclude.match_file(rel):
            return False
        return self._include is None or self._include.match_file(rel)


def _gitignore_specs(root: Path, enabled: bool = True):
    """A matcher for every ignore file under ``root`` (the root's own parents' are not read)."""
    import pathspec

    specs: list[tuple[Path, pathspec.PathSpec]] = []

    def load(folder: Path) -> None:
        if not enabled:
            return
        lines: list[str] = []
        for name in IGNORE_FILES:
            gi = folder / name
            if gi.is_file():
                try:
                    lines += gi.read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    continue
        if lines:
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


def display(path: str | os.PathLike) -> str:
    """``path`` as printable text (undecodable bytes shown as ``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _decodable(path: str | os.PathLike) -> bool:
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _forbidden(path: Path) -> bool:
    return any(_inside(path, f) for f in FORBIDDEN)


def absolute(path: str | os.PathLike) -> Path:
    """How a root is recorded: a folder resolved (as before), a file as given, its
    folder resolved (a link given directly keeps its own name)."""
    p = Path(path)
    return p.resolve() if p.is_dir() else p.parent.resolve() / p.name


def _check_file(f: Path, root_real: Path | None, follow: bool) -> str | None:
    """Why ``f`` is not read, or None.  ``root_real``: the resolved root links must stay in."""
    try:
        st = os.lstat(f)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f.resolve(strict=True)
            st = os.stat(target)
        except (OSError, RuntimeError):
            return "broken symbolic link"
        if _forbidden(target):
            return f"symbolic link into /{target.parts[1]} (never read)"
        if not follow and root_real is not None and not _inside(target, root_real):
            return "symbolic link to outside the folder (not followed; see follow_symlinks)"
    if not stat.S_ISREG(st.st_mode):
        kind = ("fifo" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "directory"
                if stat.S_ISDIR(st.st_mode) else "special file")
        return f"not a regular file ({kind})"
    return None


def walk_files(paths: Iterable[str | os.PathLike], skip: Callable[[Path], bool] | None = None,
               follow_symlinks: bool = False, on_skip: OnSkip | None = None,
               select: Selection | None = None) -> Iterator[Path]:
    """Files under ``paths`` (files given directly are always included), in sorted
    order, honouring ignore files, skipping hidden files and VCS/cache folders.

    Args:
        skip: a folder predicate (the database's own folder).
        follow_symlinks: follow links to files and folders outside the root too (never
            into /proc, /sys or /dev, never twice into one folder).
        on_skip: told ``(path, reason)`` of each link, special file or undecodable
            name that is left out.
        select: hidden files, globs and types (default: ``Selection()``: hidden skipped).
    """
    note = on_skip or (lambda path, reason: None)
    select = select or Selection()
    for p in paths:
        given = Path(p)
        if not given.exists():
            raise errors.InputError(f"{given}: no such file or directory")
        root = absolute(given)
        if _forbidden(root.resolve()):
            note(display(root), "under /proc, /sys or /dev (never read)")
            continue
        if not _decodable(root):
            note(display(root), "name is not valid UTF-8")
            continue
        if not given.is_dir():
            why = _check_file(root, None, True)
            if why:
                note(display(root), why)
            else:
                yield root
            continue
        yield from _walk(root, skip, follow_symlinks, note, select)


def _walk(root: Path, skip, follow: bool, note: OnSkip, select: Selection) -> Iterator[Path]:
    load, ignored = _gitignore_specs(root, select.ignore_files)
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow):
        here = Path(dirpath)
        if follow:  # a followed link may lead back up: enter each real folder once
            st = os.stat(here)
            if (st.st_dev, st.st_ino) in seen_dirs or _forbidden(here.resolve()):
                dirnames[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
        load(here)
        rel_here = here.relative_to(root).as_posix() if here != root else ""
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_here}/{d}" if rel_here else d
            if d in SKIP_DIRS or not select.keep_dir(rel, d) or ignored(here / d, True) \
                    or (skip and skip(here / d)):
                continue
            if not _decodable(d):
                note(display(here / d), "name is not valid UTF-8 (folder not indexed)")
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            f = here / name
            rel = f"{rel_here}/{name}" if rel_here else name
            if name in IGNORE_FILES or not select.keep_file(rel, name) or ignored(f, False):
                continue
            if not _decodable(name):
                note(display(f), "name is not valid UTF-8")
                continue
            why = _check_file(f, root, follow)
            if why:
                note(str(f), why)
                continue
            yield f


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) for a text file, (None, reason) for anything to skip (see
    :func:`read_file`)."""
    text, reason, _ = read_file(path)
    return text, reason


def read_file(path: Path) -> tuple[str | None, str | None, str | None]:
    """``(text, None, encoding)`` for a text file, ``(None, reason, None)`` for anything
    to skip.  UTF-8 (a BOM is dropped: encoding ``utf-8-sig``) else the encoding
    charset-normalizer finds (Latin-1, cp1252, Shift-JIS...); a NUL byte in the first
    8 KiB, or no encoding that fits, is a binary file.

    One open, never blocking (a file swapped for a FIFO is refused, not waited on), and
    at most ``MAX_FILE_BYTES + 1`` bytes read whatever the file claims or grows to.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None, "not a regular file", None
            if st.st_size > MAX_FILE_BYTES:
                return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", None
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}", None
    if len(data) > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", None
    if b"\x00" in data[:8192]:
        return None, "binary file", None
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text, encoding = _detected(data)
        if text is None:
            return None, "binary file (no text encoding fits)", None
    if not text.strip():
        return None, "empty file", None
    return text, None, encoding


#: among encodings that fit a text equally well, the most common legacy one wins: on
#: short Western texts charset-normalizer often ties cp1250 (Central European) with
#: cp1252 (Windows Western, a superset of Latin-1's printable characters)
PREFERRED_ENCODINGS = ("cp1252",)


def _detected(data: bytes) -> tuple[str | None, str | None]:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None, None
    best = matches[0]
    if best.coherence == 0:  # no language evidence at all (a few accented words)
        try:
            return data.decode(PREFERRED_ENCODINGS[0]), PREFERRED_ENCODINGS[0]
        except UnicodeDecodeError:
            pass
    ties = [m for m in matches
            if m.chaos <= best.chaos + 1e-9 and m.coherence >= best.coherence - 1e-9]
    pick = next((m for m in ties if m.encoding in PREFERRED_ENCODINGS), best)
    return str(pick), pick.encoding
