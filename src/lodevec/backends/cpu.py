"""The CPU backend: an architecture's blocks on the Cython kernels, unpadded.

Reads as a chain, one method per stage:
``token ids -> embeddings -> blocks (attention, FFN) -> mean pooling -> vectors``.

Batches are *unpadded*: the tokens of all sequences are stacked into one
``(n_tokens, hidden)`` matrix, so every matmul does only real work and a text gives
the same vector alone or in any batch; attention (one kernel call per layer) never
mixes sequences.  Every array operation goes through ``self.ops``, the kernels with
this backend's thread count bound, so two encoders in one process keep their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from types import SimpleNamespace

import numpy as np

from .. import errors, kernels
from ..arch import Block
from ..gguf.constants import Tensors as T
from ..gguf.model import GGUFModel, ModelConfig
from ..kernels import runtime

#: the kernels a forward calls (each takes ``threads=``)
_OPS = ("get_rows", "matmul", "layer_norm", "add_layer_norm", "gelu", "swiglu", "attention",
        "segment_mean")


def bound_ops(threads: int | None) -> SimpleNamespace:
    """The kernels with ``threads`` bound (None: the process count at each call)."""
    return SimpleNamespace(**{n: partial(getattr(kernels, n), threads=threads) for n in _OPS})


class CpuBackend:
    """Forward pass of a BERT-family encoder on GGUF weights (the ``Backend`` contract).

    Args:
        model: the opened GGUF model.
        threads: compute threads (None: the process default at each call).
    """

    device = "cpu"
    max_batch_tokens = 8192

    def __init__(self, model: GGUFModel, *, threads: int | None = None):
        self._threads = runtime.check_threads(threads)
        self.ops = bound_ops(self._threads)
        self.config: ModelConfig = model.config
        self.arch = model.arch
        self.model = model
        self.token_embd = model.weight(T.TOKEN_EMBD)
        # every input is segment A: row 0 of the token-type table is added to each token
        self.type_row0 = self.ops.get_rows(model.weight(T.TOKEN_TYPES), np.zeros(1, dtype=np.int64))[0]
        self.pos_embd = None if self.arch.uses_rope else model.weight(T.POS_EMBD)
        self.embd_norm_w = model.vector(T.EMBD_NORM_W)
        self.embd_norm_b = model.vector(T.EMBD_NORM_B)
        self.blocks: list[Block] = [self.arch.load_block(model, b) for b in range(self.config.n_layers)]
        self._rope_cache: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def threads(self) -> int:
        """Threads one forward uses."""
        return runtime.resolve(self._threads)

    # ------------------------------------------------------------------ chain
    def forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Mean-pooled hidden states.

        Args:
            batch: token-id sequences, each ``[CLS] ... [SEP]``, each at most
                ``config.max_tokens`` long.

        Returns:
            ``float32 (len(batch), hidden)``, not normalised.
        """
        lengths = np.array([len(s) for s in batch], dtype=np.int64)
        if len(batch) == 0:
            return np.zeros((0, self.config.hidden), dtype=np.float32)
        if lengths.min() < 1 or lengths.max() > self.config.max_tokens:
            raise errors.TextError(
                f"sequence lengths must be 1..{self.config.max_tokens}, got {lengths.min()}..{lengths.max()}")
        ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in batch])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rope = self.rope_tables(lengths)
        x = self.embed_tokens(ids, lengths)
        for block in self.blocks:
            x = self.block(x, block, offsets, rope)
        return self.ops.segment_mean(x, offsets)  # mean over all tokens, [CLS] and [SEP] included

    def embed_tokens(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Token (+ position) + token-type-0 embeddings, then LayerNorm.  ``(N, H)``."""
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise errors.TextError(f"token ids must be in 0..{self.config.vocab_size - 1}")
        x = self.ops.get_rows(self.token_embd, ids)
        x += self.type_row0
        if self.pos_embd is not None:
            positions = np.concatenate([np.arange(n) for n in lengths])
            x += self.ops.get_rows(self.pos_embd, positions)
        return self.ops.layer_norm(x, self.embd_norm_w, self.embd_norm_b, self.config.layer_norm_eps)

    def block(self, x: np.ndarray, w: Block, offsets: np.ndarray,
              rope: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """One post-norm transformer block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""
        ops, eps = self.ops, self.config.layer_norm_eps
        q, k, v = w.qkv(ops, x, self.config.hidden)
        # one kernel call for the whole unpadded batch: parallel over (sequence, head),
        # rotary embedding fused in; q/k/v may be column slices of a fused projection
        cos, sin = rope if rope is not None else (None, None)
        ctx = ops.attention(q, k, v, offsets, self.config.n_heads, cos, sin)
        h = ops.matmul(ctx, w.out, w.out_b)
        x = ops.add_layer_norm(h, x, w.attn_norm_w, w.attn_norm_b, eps)
        h = ops.matmul(w.ffn_inner(ops, x), w.down, w.down_b)
        return ops.add_layer_norm(h, x, w.out_norm_w, w.out_norm_b, eps)

    def rope_tables(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-token cos/sin ``(N, d/2)`` (each token's position in its sequence), or
        None for a model without rotary embeddings.  Built once per forward."""
        if not self.arch.uses_rope:
            return None
        tables = [self.rope(int(n)) for n in lengths]
        if len(tables) == 1:
            return np.ascontiguousarray(tables[0][0]), np.ascontiguousarray(tables[0][1])
        return (np.concatenate([c for c, _ in tables]), np.concatenate([sn for _, sn in tables]))

    def rope(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """cos/sin tables ``(n, d/2)`` for a sequence of ``n`` tokens.

        Past the trained context, dynamic NTK scaling (factor 2) stretches the base:
        ``base' = base * (2 n / ctx - 1) ** (d / (d - 2))``, as nomic's reference does.
        """
        cfg = self.config
        d = cfg.head_dim
        base = cfg.rope_base
        if n > cfg.context_length:
            factor = 2.0
            base = base * ((factor * n / cfg.context_length) - (factor - 1)) ** (d / (d - 2))
        # sized by the input, never by the declared context: a table row per position
        # used (rounded up to a power of two so nearby lengths share one); each row's
        # values do not depend on how many rows are built
        key = (n if n > cfg.context_length else min(cfg.context_length, _bucket(n)), base)
        cached = self._rope_cache.get(key)
        if cached is None:
            # float32 throughout, like the reference's torch computation
            inv_freq = (1.0 / (np.float32(base) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))).astype(np.float32)
            t = np.arange(key[0], dtype=np.float32)
            freqs = np.outer(t, inv_freq).astype(np.float32)
            cached = (np.cos(freqs), np.sin(freqs))
            if len(self._rope_cache) > 8:
                self._rope_cache.clear()
            self._rope_cache[key] = cached
        cos, sin = cached
        return cos[:n], sin[:n]


def _bucket(n: int) -> int:
    """The power of two >= ``n`` (at least 64): the rope table length for ``n`` tokens."""
    return max(64, 1 << (max(n, 1) - 1).bit_length())
