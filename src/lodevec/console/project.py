"""The database a command uses: ``--db``, else ``$LODEVEC_DB``, else the nearest
``.lodevec`` folder at or above the working directory (as git finds ``.git``); ``index``
creates ``./.lodevec`` when there is none."""

from __future__ import annotations

import os
from pathlib import Path

from .. import errors

PROJECT_DB = ".lodevec"  # the same name as lodevec.ingest.sources.PROJECT_DB


def find_project_db(start: Path | None = None) -> Path | None:
    """The nearest ``.lodevec`` folder at or above ``start`` (default: the working dir)."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_DB
        if candidate.is_dir():
            return candidate
    return None


def resolve_db(given: str | None, *, create: bool) -> str:
    """The database URI to use.

    Raises:
        InputError: none is given, set or found (and ``create`` is False).
    """
    if given:
        return given
    env = os.environ.get("LODEVEC_DB", "").strip()
    if env:
        return env
    found = find_project_db()
    if found is not None:
        return str(found)
    if create:
        return str(Path.cwd() / PROJECT_DB)
    raise errors.InputError(
        f"no database: no {PROJECT_DB} folder here or above {Path.cwd()}; run `lodevec index .` "
        "in your project first, or give --db DIR (or set LODEVEC_DB)")
