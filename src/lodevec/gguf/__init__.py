"""The GGUF file: format constants, memory-mapped tensors, and the validated model.

``GGUFModel.open(path)`` is the door; nothing else reads a GGUF file.
"""

from __future__ import annotations

from .model import GGUFModel, ModelConfig
from .tensors import QuantTensor

__all__ = ["GGUFModel", "ModelConfig", "QuantTensor"]
