"""What an encoder architecture is, as data the rest of lodevec reads.

An ``Architecture`` says which tensors its graph needs (with shapes), how one block's
weights are gathered from the file, how a block projects Q/K/V and runs its
feed-forward, whether positions are rotary or a table, which task prompts the model
was trained with, and which Matryoshka sizes it supports.  The CPU backend runs any
of them with one chain; adding a model family is one file here plus a registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..gguf.constants import Tensors as T

if TYPE_CHECKING:  # annotations only: the registry loads without numpy
    import numpy as np

#: a tensor requirement: (rows, cols) or (n,); -1 is "any"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Block:
    """The weights every post-norm BERT block has; subclasses add their projections."""

    out: Any                       # attention output projection (H, H)
    out_b: np.ndarray | None
    attn_norm_w: np.ndarray
    attn_norm_b: np.ndarray
    down: Any                      # FFN down projection (H, F)
    down_b: np.ndarray | None
    out_norm_w: np.ndarray
    out_norm_b: np.ndarray

    def qkv(self, ops, x: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Q, K, V ``(N, H)`` each (column slices are fine: the attention kernel takes strides)."""
        raise NotImplementedError

    def ffn_inner(self, ops, x: np.ndarray) -> np.ndarray:
        """The activated inner FFN state ``(N, F)``, before the down projection."""
        raise NotImplementedError


class Architecture:
    """One encoder family (``general.architecture`` in the GGUF file)."""

    #: the value of ``general.architecture``
    name: ClassVar[str]
    #: ``tokenizer.ggml.model`` the graph is trained with (WordPiece for BERT families)
    tokenizer_model: ClassVar[str] = "bert"
    #: rotary position embeddings (else a learned position table)
    uses_rope: ClassVar[bool] = False
    #: task -> prefix the model was trained with (empty: texts are used as given)
    prompts: ClassVar[dict[str, str]] = {}
    #: Matryoshka output sizes below the hidden size (empty: only the full vector)
    matryoshka_dims: ClassVar[tuple[int, ...]] = ()

    def max_tokens(self, context_length: int) -> int:
        """Longest input the graph accepts for a trained context of ``context_length``."""
        return context_length

    def check_config(self, config) -> str | None:
        """What is wrong with ``config`` (a ``ModelConfig``) for this graph, or None.

        Rotary graphs need an even head size above 2: the tables hold ``d/2``
        frequencies and NTK scaling raises the base to ``d / (d - 2)``.
        """
        d = config.hidden // config.n_heads
        if self.uses_rope and (d % 2 or d < 4):
            return (f"head size {d} ({config.hidden} / {config.n_heads} heads) must be even and >= 4 "
                    f"for rotary position embeddings")
        return None

    def check_tensors(self, config, tensors: dict[str, Any]) -> str | None:
        """What is wrong with the (shape-checked) tensors for ``config``, or None."""
        return None

    def required_tensors(self, hidden: int, ffn: int, vocab: int, context_length: int,
                         n_layers: int) -> dict[str, Shape]:
        """Every tensor the graph reads, with its shape."""
        need: dict[str, Shape] = {
            T.TOKEN_EMBD: (vocab, hidden),
            T.TOKEN_TYPES: (-1, hidden),  # 1 or 2 rows; row 0 is added
            T.EMBD_NORM_W: (hidden,),
            T.EMBD_NORM_B: (hidden,),
        }
        for b in range(n_layers):
            for template, shape in self.block_tensors(hidden, ffn).items():
                need[template.format(bid=b)] = shape
        return need

    def block_tensors(self, hidden: int, ffn: int) -> dict[str, Shape]:
        """Tensor-name templates of one block (``{bid}`` unfilled) with their shapes."""
        H, F = hidden, ffn
        return {
            T.ATTN_OUT: (H, H), T.ATTN_OUT_NORM_W: (H,), T.ATTN_OUT_NORM_B: (H,),
            T.LAYER_OUT_NORM_W: (H,), T.LAYER_OUT_NORM_B: (H,),
            T.FFN_UP: (F, H), T.FFN_DOWN: (H, F),
        }

    def load_block(self, model, bid: int) -> Block:
        """Gather block ``bid``'s weights from an opened ``GGUFModel``."""
        raise NotImplementedError

    @staticmethod
    def common(model, bid: int) -> dict[str, Any]:
        """The ``Block`` fields every architecture reads the same way."""
        w, vec, opt = model.weight, model.vector, _optional(model)
        return dict(
            out=w(T.ATTN_OUT, bid), out_b=opt(T.ATTN_OUT_B, bid),
            attn_norm_w=vec(T.ATTN_OUT_NORM_W, bid), attn_norm_b=vec(T.ATTN_OUT_NORM_B, bid),
            down=w(T.FFN_DOWN, bid), down_b=opt(T.FFN_DOWN_B, bid),
            out_norm_w=vec(T.LAYER_OUT_NORM_W, bid), out_norm_b=vec(T.LAYER_OUT_NORM_B, bid),
        )


def _optional(model) -> Callable[[str, int], np.ndarray | None]:
    def opt(template: str, bid: int) -> np.ndarray | None:
        return model.vector(template, bid) if model.has(template, bid) else None
    return opt
