"""The GGUF format as lodevec uses it, declared once.

Block layouts and type ids come from ``gguf.constants`` (the reference definitions);
this module adds what lodevec needs on top: which types the kernels compute with,
metadata keys and tensor-name templates (which tensors each architecture reads is
declared in ``lodevec.arch``).  ``tests/test_constants.py``
checks the Cython kernels' block sizes against this table.
"""

from __future__ import annotations

from gguf.constants import GGML_QUANT_SIZES, GGUF_MAGIC, QK_K, GGMLQuantizationType

__all__ = [
    "GGMLQuantizationType", "GGML_QUANT_SIZES", "GGUF_MAGIC", "QK_K",
    "SUPPORTED_TYPES", "BLOCK_SIZE", "TYPE_SIZE", "Keys", "Tensors", "GGUF_VERSIONS",
]

T = GGMLQuantizationType

#: Tensor types the kernels dequantize and multiply with.  Every type the published
#: nomic-embed-text-v1.5 GGUF files use (the K-quant mixes combine several).
SUPPORTED_TYPES: tuple[GGMLQuantizationType, ...] = (
    T.F32, T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
    T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
)

#: elements per block, bytes per block (sizes written as sums of their fields
#: in gguf-py; we reuse its table rather than restate it).
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
