"""lodevec's GGUF constants equal gguf-py's (the format's reference definitions), entry
for entry: lodevec restates them so that no command imports gguf-py at start."""

from __future__ import annotations

import gguf.constants as ref

from lodevec.gguf import constants as ours


def test_quant_types_and_block_sizes_equal_gguf_py():
    assert {t.name: int(t) for t in ours.GGMLQuantizationType} == {
        t.name: int(t) for t in ref.GGMLQuantizationType}
    assert {t.name: v for t, v in ours.GGML_QUANT_SIZES.items()} == {
        t.name: v for t, v in ref.GGML_QUANT_SIZES.items()}


def test_value_types_and_magic_equal_gguf_py():
    assert {t.name: int(t) for t in ours.GGUFValueType} == {t.name: int(t) for t in ref.GGUFValueType}
    assert ours.GGUF_MAGIC == ref.GGUF_MAGIC and ours.QK_K == ref.QK_K


def test_keys_are_gguf_py_spellings():
    k = ref.Keys
    assert ours.Keys.ARCHITECTURE == k.General.ARCHITECTURE
    assert ours.Keys.TOKENS == k.Tokenizer.LIST
    assert ours.Keys.TOKEN_TYPE == k.Tokenizer.TOKEN_TYPE
    assert ours.Keys.SEP_ID == k.Tokenizer.SEP_ID
    assert ours.Keys.EMBEDDING_LENGTH == k.LLM.EMBEDDING_LENGTH
    assert ours.Keys.LAYERNORM_EPS == k.Attention.LAYERNORM_EPS
