"""nomic-embed-text (v1, v1.5): fused QKV without biases, SwiGLU, rotary positions with
dynamic NTK scaling past the trained context, task prompts, Matryoshka sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..gguf.constants import Tensors as T
from .base import Architecture, Block, Shape


@dataclass(frozen=True)
class NomicBlock(Block):
    qkv_w: Any   # fused (3H, H)
    up: Any
    gate: Any    # SwiGLU gate (F, H)

    def qkv(self, ops, x, hidden):
        qkv = ops.matmul(x, self.qkv_w)
        return qkv[:, :hidden], qkv[:, hidden:2 * hidden], qkv[:, 2 * hidden:]

    def ffn_inner(self, ops, x):
        return ops.swiglu(ops.matmul(x, self.gate), ops.matmul(x, self.up))  # up * silu(gate)


class NomicBert(Architecture):
    name = "nomic-bert"
    uses_rope = True
    prompts = {
        "search_query": "search_query: ",
        "search_document": "search_document: ",
        "clustering": "clustering: ",
        "classification": "classification: ",
    }
    #: the sizes nomic-embed-text-v1.5 was trained for (v1 files simply have fewer uses)
    matryoshka_dims = (768, 512, 256, 128, 64)
    #: NTK rope scaling lets inputs run to this multiple of the trained context
    context_multiple = 4

    def max_tokens(self, context_length: int) -> int:
        return context_length * self.context_multiple

    def block_tensors(self, hidden: int, ffn: int) -> dict[str, Shape]:
        H, F = hidden, ffn
        return {**super().block_tensors(H, F), T.ATTN_QKV: (3 * H, H), T.FFN_GATE: (F, H)}

    def load_block(self, model, bid: int) -> NomicBlock:
        w = model.weight
        return NomicBlock(**self.common(model, bid), qkv_w=w(T.ATTN_QKV, bid),
                          up=w(T.FFN_UP, bid), gate=w(T.FFN_GATE, bid))
