"""The CLI's door to distributed indexing (``lodevec index --ray``): its options, and
which indexer a run uses.  Light on purpose: ``lodevec`` builds its parser at every start,
so neither Ray nor the indexer is imported here (:mod:`lodevec.ingest.distributed` is,
only for ``--ray``).
"""

from __future__ import annotations

import functools

from . import errors

__all__ = ["add_cli_arguments", "indexer_for"]


def add_cli_arguments(parser) -> None:
    """``--ray [auto|ADDRESS]`` and ``--ray-workers N`` for ``lodevec index``."""
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                        help="embed on a Ray cluster (auto: the running one, else a local one; "
                             "or host:port / ray://...); needs pip install 'lodevec[ray]'")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="Ray actors, each with --threads threads (default: the cluster's "
                             "CPUs / --threads)")


def indexer_for(args):
    """The indexer class ``lodevec index`` uses: ``Indexer``, or with ``--ray`` a
    ``RayIndexer`` bound to the cluster (same constructor arguments)."""
    if getattr(args, "ray", None) is None:
        from .ingest.indexer import Indexer

        return Indexer
    if args.ray_workers is not None and args.ray_workers < 1:
        raise errors.InputError(f"--ray-workers must be >= 1, got {args.ray_workers}")
    from .ingest.distributed import RayIndexer

    return functools.partial(RayIndexer, address=args.ray, workers=args.ray_workers,
                             threads=args.threads or 1)
