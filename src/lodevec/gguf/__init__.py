"""The GGUF file: format constants, memory-mapped tensors, and the validated model.

``GGUFModel.open(path)`` is the door; nothing else reads a GGUF file.  The names load
on first use, so importing ``lodevec.gguf.constants`` (the CLI's parser does) does not
pull in the reader.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__all__ = ["GGUFModel", "ModelConfig", "QuantTensor"]
_WHERE = {"GGUFModel": "model", "ModelConfig": "model", "QuantTensor": "tensors"}

if TYPE_CHECKING:  # pragma: no cover
    from .model import GGUFModel, ModelConfig
    from .tensors import QuantTensor


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'lodevec.gguf' has no attribute {name!r}")
