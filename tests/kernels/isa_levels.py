"""Every kernel test runs once per ISA level built and supported on this machine.

Each kernel test module imports ``isa_level`` from here (an autouse fixture; a
``conftest.py`` in this folder would shadow the suite's own ``conftest`` module).
The process's level is chosen once at import (``LODEVEC_ISA``); here
``runtime.using(level)`` swaps in each level's compiled modules in turn, so the same
assertions check the baseline, AVX2 and AVX-512 builds of every kernel.
"""

from __future__ import annotations

import pytest

from lodevec.kernels import isa, runtime


@pytest.fixture(autouse=True, params=isa.supported_levels())
def isa_level(request):
    """The compiled modules of the level under test (also ``runtime.compiled``)."""
    with runtime.using(request.param) as compiled:
        yield compiled
