"""Architectures are data: names live in lodevec/arch only, and each one declares what
the rest of the package reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lodevec
from lodevec import arch
from lodevec.gguf.constants import Tensors

SRC = Path(lodevec.__file__).parent


def test_architecture_names_appear_in_arch_only():
    names = "|".join(re.escape(n) for n in arch.ARCHITECTURES)
    pattern = re.compile(rf"""["']({names})["']""")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if p.parent.name != "arch"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []


def test_registry_and_tasks():
    assert arch.ARCHITECTURES == ("nomic-bert", "bert")
    assert arch.TASKS == ("none", "search_query", "search_document", "clustering", "classification")
    assert arch.get("llama") is None
    for name in arch.ARCHITECTURES:
        assert arch.get(name).name == name


@pytest.mark.parametrize("name", ["nomic-bert", "bert"])
def test_required_tensors_cover_every_block(name):
    a = arch.get(name)
    need = a.required_tensors(hidden=8, ffn=16, vocab=10, context_length=4, n_layers=2)
    for b in range(2):
        for template in a.block_tensors(8, 16):
            assert template.format(bid=b) in need
    assert (Tensors.POS_EMBD in need) == (not a.uses_rope)
    assert a.max_tokens(2048) == (8192 if a.uses_rope else 2048)
