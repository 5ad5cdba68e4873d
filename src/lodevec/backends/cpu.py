"""The GGUF encoder graph: nomic-bert and bert, on quantized weights.

Reads as a chain, one function per stage:
``token ids -> embeddings -> layers (attention, FFN) -> mean pooling -> vectors``.

Batches are *unpadded*: the tokens of all sequences are stacked into one
``(n_tokens, hidden)`` matrix, so every matmul does only real work and a text gives
the same vector alone or in any batch; attention (one kernel call per layer) never
mixes sequences.  Every
array operation goes through ``self.ops`` (``lodevec.kernels`` on the CPU), which is
the seam where a GPU backend plugs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import errors
from ..gguf.constants import Tensors as T
from ..gguf.model import GGUFModel, ModelConfig


@dataclass(frozen=True)
class LayerWeights:
    qkv: object | None  # nomic-bert: fused (3H, H)
    q: object | None    # bert: separate projections with biases
    k: object | None
    v: object | None
    q_b: np.ndarray | None
    k_b: np.ndarray | None
    v_b: np.ndarray | None
    out: object
    out_b: np.ndarray | None
    attn_norm_w: np.ndarray
    attn_norm_b: np.ndarray
    up: object
    up_b: np.ndarray | None
    gate: object | None  # nomic-bert SwiGLU gate
    down: object
    down_b: np.ndarray | None
    out_norm_w: np.ndarray
    out_norm_b: np.ndarray


def _load_layers(model: GGUFModel) -> list[LayerWeights]:
    nomic = model.config.architecture == "nomic-bert"
    w, vec = model.weight, model.vector

    def opt_vec(name: str, b: int) -> np.ndarray | None:
        return vec(name, b) if model.has(name, b) else None

    layers = []
    for b in range(model.config.n_layers):
        layers.append(LayerWeights(
            qkv=w(T.ATTN_QKV, b) if nomic else None,
            q=None if nomic else w(T.ATTN_Q, b),
            k=None if nomic else w(T.ATTN_K, b),
            v=None if nomic else w(T.ATTN_V, b),
            q_b=opt_vec(T.ATTN_Q_B, b), k_b=opt_vec(T.ATTN_K_B, b), v_b=opt_vec(T.ATTN_V_B, b),
            out=w(T.ATTN_OUT, b), out_b=opt_vec(T.ATTN_OUT_B, b),
            attn_norm_w=vec(T.ATTN_OUT_NORM_W, b), attn_norm_b=vec(T.ATTN_OUT_NORM_B, b),
            up=w(T.FFN_UP, b), up_b=opt_vec(T.FFN_UP_B, b),
            gate=w(T.FFN_GATE, b) if nomic else None,
            down=w(T.FFN_DOWN, b), down_b=opt_vec(T.FFN_DOWN_B, b),
            out_norm_w=vec(T.LAYER_OUT_NORM_W, b), out_norm_b=vec(T.LAYER_OUT_NORM_B, b),
        ))
    return layers


class EncoderGraph:
    """Forward pass of a BERT-family encoder on GGUF weights.

    Implements the ``Backend`` contract (``lodevec.backend``): ``forward`` takes a
    batch of token-id sequences and returns their mean-pooled, un-normalised vectors.

    Args:
        model: the opened GGUF model.
        ops: array operations (``lodevec.kernels`` by default).
    """

    is_padded = False
    max_batch_tokens = 8192

    def __init__(self, model: GGUFModel, ops=None):
        if ops is None:
            from .. import kernels as ops
        self.ops = ops
        self.config: ModelConfig = model.config
        self.model = model
        self.token_embd = model.weight(T.TOKEN_EMBD)
        # every input is segment A: row 0 of the token-type table is added to each token
        self.type_row0 = self.ops.get_rows(model.weight(T.TOKEN_TYPES), np.zeros(1, dtype=np.int64))[0]
        self.pos_embd = model.weight(T.POS_EMBD) if not self.config.uses_rope else None
        self.embd_norm_w = model.vector(T.EMBD_NORM_W)
        self.embd_norm_b = model.vector(T.EMBD_NORM_B)
        self.layers = _load_layers(model)
        self._rope_cache: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}

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
        for layer in self.layers:
            x = self.layer(x, layer, offsets, rope)
        return self.mean_pool(x, offsets)

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

    def layer(self, x: np.ndarray, w: LayerWeights, offsets: np.ndarray,
              rope: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """One post-norm transformer block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""
        ops, eps = self.ops, self.config.layer_norm_eps
        H = self.config.hidden
        if w.qkv is not None:
            qkv = ops.matmul(x, w.qkv)
            q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
        else:
            q = ops.matmul(x, w.q, w.q_b)
            k = ops.matmul(x, w.k, w.k_b)
            v = ops.matmul(x, w.v, w.v_b)
        ctx = self.attention(q, k, v, offsets, rope)
        h = ops.matmul(ctx, w.out, w.out_b)
        x = ops.add_layer_norm(h, x, w.attn_norm_w, w.attn_norm_b, eps)
        up = ops.matmul(x, w.up, w.up_b)
        if w.gate is not None:
            act = ops.swiglu(ops.matmul(x, w.gate), up)  # up * silu(gate)
        else:
            act = ops.gelu(up)
        h = ops.matmul(act, w.down, w.down_b)
        return ops.add_layer_norm(h, x, w.out_norm_w, w.out_norm_b, eps)

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, offsets: np.ndarray,
                  rope: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Bidirectional multi-head attention within each sequence.  ``(N, H)``.

        One kernel call for the whole unpadded batch (``ops.attention``: parallel over
        (sequence, head), rotary embedding fused in, scores in blocks of query rows);
        ``q``/``k``/``v`` may be column slices of the fused QKV matrix.
        """
        cos, sin = rope if rope is not None else (None, None)
        return self.ops.attention(q, k, v, offsets, self.config.n_heads, cos, sin)

    def rope_tables(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-token cos/sin ``(N, d/2)`` (each token's position in its sequence), or
        None for a model without rotary embeddings.  Built once per forward."""
        if not self.config.uses_rope:
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
        key = (n if n > cfg.context_length else cfg.context_length, base)
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

    def mean_pool(self, x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Mean of each sequence's rows (all tokens, [CLS] and [SEP] included).  ``(B, H)``."""
        return self.ops.segment_mean(x, offsets)
