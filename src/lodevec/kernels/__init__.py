"""The compute seam: every numeric kernel the encoder uses, on numpy arrays.

This package is the only code that imports ``lodevec._kernels.*`` (the compiled
Cython code, built once per ISA level; ``isa`` picks the level at import, ``runtime``
holds its modules).  Each function checks dtype, contiguity and shapes here, in Python, and
raises ``ValueError`` (``IndexError`` for bad row ids) with a message naming the
tensor and what was expected, *before* any kernel runs without the GIL -- a
kernel never reads past a buffer because of a bad argument.  A GPU backend can
replace this module function for function: callers pass numpy arrays and
:class:`~lodevec.gguf.QuantTensor` only.

Conventions: activations are float32, C-contiguous, one token per row.  A linear
layer's weight ``w`` is a QuantTensor with ``w.rows`` output features and
``w.cols`` input features; ``matmul`` computes ``x @ dequantize(w).T + bias``.

Threads: every kernel takes ``threads=`` (a backend passes its own); without it, the
process's count set by :func:`set_num_threads` (default: ``LODEVEC_NUM_THREADS``, else
OpenMP's default, i.e. ``OMP_NUM_THREADS`` or the number of cores).

Families: ``quant`` (dequantize, embedding rows, matmul), ``nn`` (norms, activations,
attention, pooling), ``vscan`` (vector-search codes and scans), ``runtime`` (threads,
matmul mode, ISA level, build facts), ``isa`` (the level: CPU features, ``LODEVEC_ISA``),
``checks`` (the validation every wrapper runs first).
"""

from __future__ import annotations

from .isa import UnsupportedISAError
from .nn import add_layer_norm, attention, gelu, l2_normalize, layer_norm, segment_mean, swiglu
from .quant import dequantize, get_rows, matmul
from .runtime import (
    get_matmul_mode,
    get_num_threads,
    kernel_info,
    openmp_enabled,
    set_matmul_mode,
    set_num_threads,
)
from .vscan import quantize_codes, quantize_query, scan_codes

__all__ = [
    "dequantize", "get_rows", "matmul",
    "layer_norm", "add_layer_norm", "gelu", "swiglu", "l2_normalize", "attention", "segment_mean",
    "quantize_codes", "quantize_query", "scan_codes",
    "set_num_threads", "get_num_threads", "openmp_enabled", "kernel_info",
    "set_matmul_mode", "get_matmul_mode", "UnsupportedISAError",
]
