"""The block geometry compiled into the Cython kernels equals lodevec.constants (gguf's table)."""

from __future__ import annotations

from isa_levels import isa_level  # noqa: F401  (autouse: every test at every ISA level)

from lodevec.gguf.constants import BLOCK_SIZE, SUPPORTED_TYPES, TYPE_SIZE
from lodevec.kernels import runtime


def test_kernel_block_layout_matches_constants():
    layout = runtime.compiled.quant.block_layout()
    assert set(layout) == {int(t) for t in SUPPORTED_TYPES}
    for t in SUPPORTED_TYPES:
        assert layout[int(t)] == (BLOCK_SIZE[t], TYPE_SIZE[t]), t.name


def test_supported_types_have_sane_geometry():
    for t in SUPPORTED_TYPES:
        blk, size = BLOCK_SIZE[t], TYPE_SIZE[t]
        assert blk in (1, 32, 256), t.name
        assert 0 < size <= 4 * blk, t.name
