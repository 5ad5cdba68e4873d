"""Classic BERT (all-MiniLM, bge, e5): separate Q/K/V with biases, GELU, a learned
position table, no task prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..gguf.constants import Keys
from ..gguf.constants import Tensors as T

if TYPE_CHECKING:  # annotations only: the registry loads without numpy
    import numpy as np
from .base import Architecture, Block, Shape


@dataclass(frozen=True)
class BertBlock(Block):
    q: Any
    k: Any
    v: Any
    q_b: np.ndarray | None
    k_b: np.ndarray | None
    v_b: np.ndarray | None
    up: Any
    up_b: np.ndarray | None

    def qkv(self, ops, x, hidden):
        return (ops.matmul(x, self.q, self.q_b), ops.matmul(x, self.k, self.k_b),
                ops.matmul(x, self.v, self.v_b))

    def ffn_inner(self, ops, x):
        return ops.gelu(ops.matmul(x, self.up, self.up_b))


class Bert(Architecture):
    name = "bert"

    def required_tensors(self, hidden, ffn, vocab, context_length, n_layers):
        need = super().required_tensors(hidden, ffn, vocab, context_length, n_layers)
        need[T.POS_EMBD] = (context_length, hidden)
        return need

    def check_tensors(self, config, tensors):
        # positions index the table: a context longer than it would read past its end
        rows = tensors[T.POS_EMBD].rows
        if config.context_length > rows:
            return (f"metadata key {Keys.CONTEXT_LENGTH.format(arch=self.name)}={config.context_length} "
                    f"exceeds the {rows} rows of tensor {T.POS_EMBD}; expected at most {rows}")
        return None

    def block_tensors(self, hidden: int, ffn: int) -> dict[str, Shape]:
        H, F = hidden, ffn
        return {**super().block_tensors(H, F),
                T.ATTN_Q: (H, H), T.ATTN_Q_B: (H,), T.ATTN_K: (H, H), T.ATTN_K_B: (H,),
                T.ATTN_V: (H, H), T.ATTN_V_B: (H,),
                T.ATTN_OUT_B: (H,), T.FFN_UP_B: (F,), T.FFN_DOWN_B: (H,)}

    def load_block(self, model, bid: int) -> BertBlock:
        w, vec = model.weight, model.vector
        return BertBlock(
            **self.common(model, bid),
            q=w(T.ATTN_Q, bid), k=w(T.ATTN_K, bid), v=w(T.ATTN_V, bid),
            q_b=vec(T.ATTN_Q_B, bid), k_b=vec(T.ATTN_K_B, bid), v_b=vec(T.ATTN_V_B, bid),
            up=w(T.FFN_UP, bid), up_b=vec(T.FFN_UP_B, bid),
        )
