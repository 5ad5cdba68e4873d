"""The backend contract: THE seam where a compute engine plugs in.

A backend turns a batch of token-id sequences into mean-pooled vectors.  The CPU
backend (``cpu.py``) runs the architecture's blocks (``lodevec.arch``) on the Cython
kernels; a CUDA backend implements the same contract in one more file and one more
line in ``DEVICES``.  Nothing outside this package constructs a backend: the
``Encoder`` asks :func:`create_backend` with the device its caller chose
(``Embedder.from_gguf(device=...)``, ``lodevec ... --device``, the server).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Protocol, runtime_checkable

import numpy as np

from ..gguf.model import GGUFModel


@runtime_checkable
class Backend(Protocol):
    #: the device it runs on (a key of ``DEVICES``)
    device: str
    #: compute threads one forward uses
    threads: int
    #: tokens one forward may hold (the batcher fills batches up to it)
    max_batch_tokens: int

    def forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled hidden states, ``float32 (len(batch), hidden)``, not normalised."""
        ...


#: device name -> "module:factory" of its backend, imported only when chosen
DEVICES: dict[str, str] = {
    "cpu": "lodevec.backends.cpu:CpuBackend",
}


def create_backend(model: GGUFModel, device: str = "cpu", *, threads: int | None = None) -> Backend:
    """The backend for ``device``.

    Args:
        model: the opened model.
        device: a key of ``DEVICES``.
        threads: compute threads (None: the process default at each call).

    Raises:
        ValueError: unknown device, or a bad thread count.
    """
    target = DEVICES.get(device)
    if target is None:
        raise ValueError(f"device {device!r} is not available; choose one of {', '.join(DEVICES)}")
    module, name = target.split(":")
    factory: Callable[..., Backend] = getattr(import_module(module), name)
    return factory(model, threads=threads)
