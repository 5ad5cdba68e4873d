"""A weight matrix as it sits in the GGUF file: raw quantized blocks, never copied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import BLOCK_SIZE, TYPE_SIZE, GGMLQuantizationType


@dataclass(frozen=True)
class QuantTensor:
    """One tensor in GGML layout: ``rows`` rows of ``cols`` elements each.

    ``data`` is a read-only view of the file (memory-mapped), shaped
    ``(rows, row_bytes)`` as ``uint8`` where ``row_bytes = cols // block * type_size``.
    For a weight ``W`` of a linear layer, ``rows`` is the output size and ``cols``
    the input size (GGML's ``ne0`` is ``cols``), so ``y = x @ W.T``.
    """

    name: str
    qtype: GGMLQuantizationType
    rows: int
    cols: int
    data: np.ndarray  # uint8, (rows, row_bytes), C-contiguous

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def row_bytes(self) -> int:
        return self.cols // BLOCK_SIZE[self.qtype] * TYPE_SIZE[self.qtype]

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    @classmethod
    def from_array(cls, name: str, qtype: GGMLQuantizationType, raw: np.ndarray, cols: int) -> QuantTensor:
        """Wrap raw bytes (any dtype, any shape holding rows*row_bytes bytes) without copying."""
        blk, size = BLOCK_SIZE[qtype], TYPE_SIZE[qtype]
        if cols % blk:
            raise ValueError(f"{name}: {cols} columns is not a multiple of the {qtype.name} block ({blk})")
        row_bytes = cols // blk * size
        flat = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        if flat.size % row_bytes:
            raise ValueError(f"{name}: {flat.size} bytes is not a whole number of {row_bytes}-byte rows")
        return cls(name, qtype, flat.size // row_bytes, cols, flat.reshape(-1, row_bytes))
