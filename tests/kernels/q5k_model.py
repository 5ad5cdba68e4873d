"""A Q5_K copy of the nomic-tiny f16 fixture, for the int8 path's Q5_K conformance.

The shared Q4_K_M fixtures hold only Q4_K and Q6_K tensors (their mix puts Q5_K
nowhere at this size), so this writes one where every matrix is Q5_K, with a plain
numpy quantizer of the Q5_K block layout (ggml's ``block_q5_K``)::

    f16 d | f16 dmin | 12 bytes: 8 scales, 8 mins (6 bits, packed as Q4_K) | qh[32] | qs[128]

    value(64 c + 32 h + l) = d * sc[2c + h] * q - dmin * m[2c + h]
    q = (qs[32 c + l] >> 4 h) & 15  |  (qh[l] >> (2 c + h) & 1) << 4        (0..31)

The quantizer is simpler than llama.cpp's (no search for the best scale), which is
fine here: both the reference and the f32 path read the same file.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from gguf_edit import rewrite

Q5_K = gguf.GGMLQuantizationType.Q5_K


def quantize_q5k(w: np.ndarray) -> np.ndarray:
    """float ``(rows, cols)``, cols a multiple of 256 -> uint8 ``(rows, cols // 256 * 176)``."""
    rows, cols = w.shape
    x = np.asarray(w, np.float32).reshape(rows, cols // 256, 8, 32)
    mins = np.maximum(-x.min(axis=-1), 0)                      # (rows, nb, 8), >= 0
    scales = (x.max(axis=-1) + mins) / 31
    d = (scales.max(axis=-1) / 63).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63).astype(np.float16)
    d32, dm32 = d.astype(np.float32)[..., None], dmin.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.rint(scales / d32), 0).clip(0, 63).astype(np.uint8)
        mn = np.where(dm32 > 0, np.rint(mins / dm32), 0).clip(0, 63).astype(np.uint8)
        step = (d32 * sc)[..., None]
        q = np.where(step > 0, np.rint((x + (dm32 * mn)[..., None]) / step), 0)
    q = q.clip(0, 31).astype(np.uint8).reshape(rows, cols // 256, 4, 2, 32)   # (c, h, l)
    packed = np.empty((rows, cols // 256, 12), np.uint8)
    packed[..., 0:4] = (sc[..., :4] & 63) | (sc[..., 4:] >> 4) << 6
    packed[..., 4:8] = (mn[..., :4] & 63) | (mn[..., 4:] >> 4) << 6
    packed[..., 8:12] = (sc[..., 4:] & 15) | (mn[..., 4:] & 15) << 4
    qs = (q[..., 0, :] & 15) | (q[..., 1, :] & 15) << 4                        # (rows, nb, 4, 32)
    bits = (q >> 4).reshape(rows, cols // 256, 8, 32)                          # bit 2c + h
    qh = np.zeros((rows, cols // 256, 32), np.uint8)
    for k in range(8):
        qh |= bits[:, :, k] << k
    out = np.concatenate([d.view(np.uint8).reshape(rows, -1, 2), dmin.view(np.uint8).reshape(rows, -1, 2),
                          packed, qh, qs.reshape(rows, cols // 256, 128)], axis=-1)
    return np.ascontiguousarray(out.reshape(rows, cols // 256 * 176))


def write_q5k_model(src: Path, dst: Path) -> Path:
    """``src`` (an f16 GGUF) with every matrix whose rows are 256-multiples in Q5_K."""
    tensors = {}
    for t in gguf.GGUFReader(src).tensors:
        data = np.asarray(t.data)
        if data.ndim == 2 and data.dtype == np.float16 and data.shape[1] % 256 == 0:
            raw = quantize_q5k(data)
            tensors[t.name] = (raw, raw.shape, Q5_K)
    return rewrite(src, dst, tensors=tensors)
