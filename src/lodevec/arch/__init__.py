"""Encoder architectures, one file each, behind one registry.

The only place architecture names appear: everything else asks ``get(name)`` for the
``Architecture`` and reads what it declares.
"""

from __future__ import annotations

from .base import Architecture, Block
from .bert import Bert
from .nomic_bert import NomicBert

#: ``general.architecture`` -> implementation
REGISTRY: dict[str, Architecture] = {a.name: a for a in (NomicBert(), Bert())}
#: the architectures lodevec runs, in the order error messages list them
ARCHITECTURES: tuple[str, ...] = tuple(REGISTRY)
#: every task name a model may be asked for ("none": the text as given)
TASKS: tuple[str, ...] = ("none", *dict.fromkeys(t for a in REGISTRY.values() for t in a.prompts))


def get(name: str) -> Architecture | None:
    """The architecture called ``name``, or None when lodevec does not implement it."""
    return REGISTRY.get(name)


__all__ = ["Architecture", "Block", "REGISTRY", "ARCHITECTURES", "TASKS", "get"]
