"""The GGUF format as lodevec uses it, declared once.

The type ids and block layouts are the format's (``gguf.constants`` in gguf-py, the
reference definitions, holds the same table; ``tests/gguf/test_constants_ref.py``
checks every entry against it).  They are restated here, not imported, because
importing gguf-py loads its whole package (reader, writer, numpy) and this module is
read at start by the CLI's parser.  On top: which types the kernels compute with,
metadata keys and tensor-name templates (which tensors each architecture reads is
declared in ``lodevec.arch``).  ``tests/kernels/test_constants.py`` checks the Cython
kernels' block sizes against this table.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "GGMLQuantizationType", "GGUFValueType", "GGML_QUANT_SIZES", "GGUF_MAGIC", "QK_K",
    "SUPPORTED_TYPES", "BLOCK_SIZE", "TYPE_SIZE", "Keys", "Tensors", "GGUF_VERSIONS",
]

GGUF_MAGIC = 0x46554747  # "GGUF"
#: elements per K-quant super-block
QK_K = 256


class GGMLQuantizationType(IntEnum):
    """Tensor types as the file stores them (ggml's ``ggml_type``)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


class GGUFValueType(IntEnum):
    """Metadata value types."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


T = GGMLQuantizationType

#: (elements per block, bytes per block), the bytes written as the sum of the block's
#: fields (scales, mins, high bits, quants), as gguf-py writes them
GGML_QUANT_SIZES: dict[GGMLQuantizationType, tuple[int, int]] = {
    T.F32: (1, 4),
    T.F16: (1, 2),
    T.Q4_0: (32, 2 + 16),
    T.Q4_1: (32, 2 + 2 + 16),
    T.Q5_0: (32, 2 + 4 + 16),
    T.Q5_1: (32, 2 + 2 + 4 + 16),
    T.Q8_0: (32, 2 + 32),
    T.Q8_1: (32, 4 + 4 + 32),
    T.Q2_K: (256, 2 + 2 + QK_K // 16 + QK_K // 4),
    T.Q3_K: (256, 2 + QK_K // 4 + QK_K // 8 + 12),
    T.Q4_K: (256, 2 + 2 + QK_K // 2 + 12),
    T.Q5_K: (256, 2 + 2 + QK_K // 2 + QK_K // 8 + 12),
    T.Q6_K: (256, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
    T.Q8_K: (256, 4 + QK_K + QK_K // 8),
    T.IQ2_XXS: (256, 2 + QK_K // 4),
    T.IQ2_XS: (256, 2 + QK_K // 4 + QK_K // 32),
    T.IQ3_XXS: (256, 2 + QK_K // 4 + QK_K // 8),
    T.IQ1_S: (256, 2 + QK_K // 8 + QK_K // 16),
    T.IQ4_NL: (32, 2 + 16),
    T.IQ3_S: (256, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    T.IQ2_S: (256, 2 + QK_K // 4 + QK_K // 16),
    T.IQ4_XS: (256, 2 + 2 + QK_K // 2 + QK_K // 64),
    T.I8: (1, 1),
    T.I16: (1, 2),
    T.I32: (1, 4),
    T.I64: (1, 8),
    T.F64: (1, 8),
    T.IQ1_M: (256, QK_K // 8 + QK_K // 16 + QK_K // 32),
    T.BF16: (1, 2),
    T.TQ1_0: (256, 2 + 4 * 13),
    T.TQ2_0: (256, 2 + 64),
    T.MXFP4: (32, 1 + 16),
    T.NVFP4: (64, 4 + 32),
    T.Q1_0: (128, 2 + 16),
}

#: Tensor types the kernels dequantize and multiply with.  Every type the published
#: nomic-embed-text-v1.5 GGUF files use (the K-quant mixes combine several).
SUPPORTED_TYPES: tuple[GGMLQuantizationType, ...] = (
    T.F32, T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
    T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
)

#: elements per block, bytes per block of the types the kernels compute with
BLOCK_SIZE: dict[GGMLQuantizationType, int] = {t: GGML_QUANT_SIZES[t][0] for t in SUPPORTED_TYPES}
TYPE_SIZE: dict[GGMLQuantizationType, int] = {t: GGML_QUANT_SIZES[t][1] for t in SUPPORTED_TYPES}

#: GGUF versions whose layout we read (v1 used 32-bit counts and is long obsolete).
GGUF_VERSIONS = (2, 3)


class Keys:
    """Metadata keys.  ``{arch}`` is ``general.architecture``."""

    ARCHITECTURE = "general.architecture"
    NAME = "general.name"
    FILE_TYPE = "general.file_type"
    ALIGNMENT = "general.alignment"

    BLOCK_COUNT = "{arch}.block_count"
    CONTEXT_LENGTH = "{arch}.context_length"
    EMBEDDING_LENGTH = "{arch}.embedding_length"
    FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"
    HEAD_COUNT = "{arch}.attention.head_count"
    LAYERNORM_EPS = "{arch}.attention.layer_norm_epsilon"
    CAUSAL = "{arch}.attention.causal"
    POOLING_TYPE = "{arch}.pooling_type"
    ROPE_FREQ_BASE = "{arch}.rope.freq_base"

    TOKENIZER_MODEL = "tokenizer.ggml.model"
    TOKENS = "tokenizer.ggml.tokens"
    TOKEN_TYPE = "tokenizer.ggml.token_type"
    BOS_ID = "tokenizer.ggml.bos_token_id"
    EOS_ID = "tokenizer.ggml.eos_token_id"
    UNK_ID = "tokenizer.ggml.unknown_token_id"
    SEP_ID = "tokenizer.ggml.seperator_token_id"  # sic: the format's spelling
    PAD_ID = "tokenizer.ggml.padding_token_id"
    CLS_ID = "tokenizer.ggml.cls_token_id"
    MASK_ID = "tokenizer.ggml.mask_token_id"
    LOWERCASE = "tokenizer.ggml.normalizer.lowercase"


class Tensors:
    """Tensor-name templates; ``{bid}`` is the block (layer) index."""

    TOKEN_EMBD = "token_embd.weight"
    TOKEN_TYPES = "token_types.weight"
    POS_EMBD = "position_embd.weight"
    EMBD_NORM_W = "token_embd_norm.weight"
    EMBD_NORM_B = "token_embd_norm.bias"

    ATTN_QKV = "blk.{bid}.attn_qkv.weight"          # fused Q|K|V
    ATTN_Q = "blk.{bid}.attn_q.weight"              # separate Q, K, V
    ATTN_K = "blk.{bid}.attn_k.weight"
    ATTN_V = "blk.{bid}.attn_v.weight"
    ATTN_Q_B = "blk.{bid}.attn_q.bias"
    ATTN_K_B = "blk.{bid}.attn_k.bias"
    ATTN_V_B = "blk.{bid}.attn_v.bias"
    ATTN_OUT = "blk.{bid}.attn_output.weight"
    ATTN_OUT_B = "blk.{bid}.attn_output.bias"
    ATTN_OUT_NORM_W = "blk.{bid}.attn_output_norm.weight"
    ATTN_OUT_NORM_B = "blk.{bid}.attn_output_norm.bias"
    FFN_UP = "blk.{bid}.ffn_up.weight"
    FFN_UP_B = "blk.{bid}.ffn_up.bias"
    FFN_GATE = "blk.{bid}.ffn_gate.weight"          # SwiGLU gate
    FFN_DOWN = "blk.{bid}.ffn_down.weight"
    FFN_DOWN_B = "blk.{bid}.ffn_down.bias"
    LAYER_OUT_NORM_W = "blk.{bid}.layer_output_norm.weight"
    LAYER_OUT_NORM_B = "blk.{bid}.layer_output_norm.bias"
