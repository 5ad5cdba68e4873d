"""From pooled hidden states to the vectors users get: Matryoshka and L2 normalisation."""

from __future__ import annotations

import numpy as np

from .. import kernels

#: nomic's Matryoshka recipe: layer_norm without affine, this epsilon, then truncate
MATRYOSHKA_EPS = 1e-5


def finish(pooled: np.ndarray, dim: int | None, normalize: bool = True) -> np.ndarray:
    """Turn mean-pooled vectors into embeddings.

    Args:
        pooled: ``float32 (n, hidden)`` mean-pooled hidden states.
        dim: Matryoshka dimension, or ``None``/``hidden`` for the full vector.
        normalize: L2-normalise the result.

    Returns:
        ``float32 (n, dim)``.
    """
    hidden = pooled.shape[1]
    x = pooled
    if dim is not None and dim != hidden:
        x = kernels.layer_norm(np.ascontiguousarray(pooled), None, None, MATRYOSHKA_EPS)[:, :dim]
        x = np.ascontiguousarray(x)
    return kernels.l2_normalize(np.ascontiguousarray(x, dtype=np.float32)) if normalize else x.copy()
