"""How a file's path is stored as a row's ``source``.

A project database (a folder named ``.lodevec``, as ``lodevec index .`` makes) stores
the files of its project -- the folder holding ``.lodevec`` -- relative to it, with
``/`` separators, so a moved or cloned project keeps finding its files and re-indexing
it after a move replaces rows instead of doubling them.  Files outside the project,
and every file of any other database, are stored absolute, as lodevec always did, so
databases written before keep working: :meth:`SourceMap.forms` gives both spellings
of a path for lookups and removals.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

#: the folder name of a project database
PROJECT_DB = ".lodevec"


def project_root(uri: str | os.PathLike) -> Path | None:
    """The project a database at ``uri`` belongs to, or None (not a project database)."""
    s = str(uri)
    if "://" in s:
        return None
    p = Path(s).absolute()
    return p.parent if p.name == PROJECT_DB else None


class SourceMap:
    """Paths <-> stored sources for one database.

    Args:
        root: the project folder (relative sources are relative to it), or None.
    """

    def __init__(self, root: Path | None):
        self.root = root.resolve() if root is not None else None

    @classmethod
    def for_collection(cls, collection) -> SourceMap:
        return cls(project_root(collection.uri))

    def source(self, path: Path) -> str:
        """The stored form of an absolute ``path``."""
        if self.root is not None:
            try:
                return Path(path).relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)

    def path(self, source: str) -> Path:
        """The file a stored ``source`` names (relative ones under the project)."""
        if self.root is not None and source and not os.path.isabs(source):
            return self.root / PurePosixPath(source)
        return Path(source)

    def forms(self, path: Path) -> list[str]:
        """Every stored spelling of ``path``: relative (when inside the project), absolute."""
        rel, full = self.source(path), str(path)
        return [rel, full] if rel != full else [full]

    def under(self, source: str, roots: list[Path]) -> bool:
        """Whether stored ``source`` is one of ``roots`` or below one (either spelling)."""
        p = str(self.path(source))
        return any(p == str(r) or p.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)
