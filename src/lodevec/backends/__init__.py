"""The backend contract: what the embedding facade needs from a compute engine.

A backend turns a batch of token-id sequences into mean-pooled vectors.  The CPU
backend is ``lodevec.encoder.EncoderGraph`` on the Cython kernels; a CUDA backend
(CuPy) implements the same contract.  Nothing outside this module picks a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..gguf.model import GGUFModel


@runtime_checkable
class Backend(Protocol):
    #: tokens one forward may hold (the batcher fills batches up to it)
    max_batch_tokens: int
    #: whether the backend pads sequences to a common length (then the batcher
    #: groups similar lengths); the CPU backend is unpadded
    is_padded: bool

    def forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled hidden states, ``float32 (len(batch), hidden)``, not normalised."""
        ...


BACKENDS = ("cpu",)


def create_backend(model: GGUFModel, device: str = "cpu") -> Backend:
    """The backend for ``device``.

    Raises:
        ValueError: unknown device.
    """
    if device == "cpu":
        from .cpu import EncoderGraph

        return EncoderGraph(model)
    raise ValueError(f"device {device!r} is not available; choose one of {', '.join(BACKENDS)}")
