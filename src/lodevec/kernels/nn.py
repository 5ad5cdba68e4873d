"""The encoder's float32 ops: layer norm (plain and fused with the residual), GELU,
SwiGLU, L2 normalisation, attention over unpadded batches, segment means."""

from __future__ import annotations

import numpy as np

from . import checks, runtime


def _affine(name: str, weight: np.ndarray | None, bias: np.ndarray | None, d: int) -> None:
    checks.vec(f"{name}: weight", weight, d)
    checks.vec(f"{name}: bias", bias, d)
    if bias is not None and weight is None:
        raise ValueError(f"{name}: bias given without weight")


def layer_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float,
               out: np.ndarray | None = None, *, threads: int | None = None) -> np.ndarray:
    """Row-wise layer norm, as torch: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    ``var`` is the biased variance ``mean((x - mean)**2)``.

    Args:
        x: float32 ``(n, D)`` C-contiguous.
        weight: float32 ``(D,)`` or None (no affine, e.g. the Matryoshka norm).
        bias: float32 ``(D,)`` or None (requires ``weight``).
        eps: Added to the variance.
        out: Optional float32 ``(n, D)`` destination; may be ``x`` itself.

    Returns:
        float32 ``(n, D)`` (``out`` when given, else a new array).

    Raises:
        ValueError: wrong dtype / layout / shape.
    """
    checks.f32("layer_norm: x", x, 2)
    _affine("layer_norm", weight, bias, x.shape[1])
    if out is None:
        out = np.empty_like(x)
    else:
        checks.f32("layer_norm: out", out, 2, writable=True)
        if out.shape != x.shape:
            raise ValueError(f"layer_norm: out has shape {out.shape}, expected {x.shape}")
        if out is not x and np.may_share_memory(out, x):
            raise ValueError("layer_norm: out partially overlaps x")
    runtime.compiled.ops.layer_norm(x, weight, bias, float(eps), out, runtime.resolve(threads))
    return out


def add_layer_norm(x: np.ndarray, residual: np.ndarray, weight: np.ndarray | None,
                   bias: np.ndarray | None, eps: float, *, threads: int | None = None) -> np.ndarray:
    """Fused residual add and layer norm, in place: ``x = layer_norm(x + residual)``.

    Args:
        x: float32 ``(n, D)`` C-contiguous, writable; overwritten with the result.
        residual: float32 ``(n, D)`` C-contiguous.
        weight: float32 ``(D,)`` or None.
        bias: float32 ``(D,)`` or None (requires ``weight``).
        eps: Added to the variance.

    Returns:
        ``x``.

    Raises:
        ValueError: wrong dtype / layout / shape, or read-only ``x``.
    """
    checks.f32("add_layer_norm: x", x, 2, writable=True)
    checks.f32("add_layer_norm: residual", residual, 2)
    if residual.shape != x.shape:
        raise ValueError(f"add_layer_norm: residual has shape {residual.shape}, expected {x.shape}")
    if residual is not x and np.may_share_memory(residual, x):
        raise ValueError("add_layer_norm: residual overlaps x")
    _affine("add_layer_norm", weight, bias, x.shape[1])
    runtime.compiled.ops.add_layer_norm(x, residual, weight, bias, float(eps), runtime.resolve(threads))
    return x


def gelu(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Exact (erf) GELU in place: ``x = 0.5 * x * (1 + erf(x / sqrt(2)))``.

    Args:
        x: float32 C-contiguous writable array, any shape.

    Returns:
        ``x``.

    Raises:
        ValueError: wrong dtype / layout, or read-only.
    """
    checks.f32("gelu: x", x, tuple(range(1, 5)), writable=True)
    runtime.compiled.ops.gelu(x.reshape(-1), runtime.resolve(threads))
    return x


def swiglu(gate: np.ndarray, up: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """SwiGLU activation: ``up * silu(gate)``, ``silu(g) = g * sigmoid(g)``, written into ``up``.

    Args:
        gate: float32 C-contiguous, same shape as ``up``.
        up: float32 C-contiguous writable; overwritten with the result.

    Returns:
        ``up``.

    Raises:
        ValueError: wrong dtype / layout / shapes differ / read-only ``up``.
    """
    checks.f32("swiglu: gate", gate, tuple(range(1, 5)))
    checks.f32("swiglu: up", up, tuple(range(1, 5)), writable=True)
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate has shape {gate.shape}, up has {up.shape}")
    if gate is not up and np.may_share_memory(gate, up):
        raise ValueError("swiglu: gate overlaps up")
    runtime.compiled.ops.swiglu(gate.reshape(-1), up.reshape(-1), runtime.resolve(threads))
    return up


def l2_normalize(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Scale rows to unit L2 norm (a zero row stays zero).

    Args:
        x: float32 ``(n, D)`` or ``(D,)`` C-contiguous.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ValueError: wrong dtype / layout / rank.
    """
    checks.f32("l2_normalize: x", x, (1, 2))
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    out = np.empty_like(x2)
    runtime.compiled.ops.l2_normalize(x2, out, runtime.resolve(threads))
    return out.reshape(x.shape)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, offsets: np.ndarray, n_heads: int,
              cos: np.ndarray | None = None, sin: np.ndarray | None = None,
              out: np.ndarray | None = None, *, threads: int | None = None) -> np.ndarray:
    """Bidirectional multi-head attention over an unpadded batch.

    For each sequence ``s`` (rows ``offsets[s]:offsets[s+1]``) and head ``h`` (columns
    ``h*d:(h+1)*d``, ``d = H / n_heads``): ``softmax(rope(Q) rope(K)^T / sqrt(d)) V``,
    where ``rope`` is the NeoX rotate-half rotary embedding
    (``y1 = x1 cos - x2 sin``, ``y2 = x2 cos + x1 sin`` on the halves of each head)
    when ``cos``/``sin`` are given.  Sequences never attend to each other.

    Args:
        q, k, v: float32 ``(N, H)`` with contiguous columns; rows may be strided, so
            column slices of the fused ``(N, 3H)`` QKV projection are taken as is.
        offsets: integer ``(B+1,)``, ``0 = offsets[0] <= ... <= offsets[B] = N``.
        n_heads: number of heads, dividing ``H``.
        cos, sin: optional float32 ``(N, d/2)`` C-contiguous rotary tables, one row
            per token (the row of its position in its sequence), both or neither.
        out: optional float32 ``(N, H)`` destination (contiguous columns), not
            overlapping the inputs.

    Returns:
        float32 ``(N, H)`` (``out`` when given).

    Raises:
        ValueError: wrong dtype / layout / shape of any argument, bad offsets, or
            ``n_heads`` not dividing ``H``.
    """
    if not isinstance(q, np.ndarray) or q.ndim != 2:
        raise ValueError(f"attention: q: expected a 2-D float32 array, got {checks.describe(q)}")
    shape = q.shape
    for name, a in (("q", q), ("k", k), ("v", v)):
        checks.strided_rows(f"attention: {name}", a, shape)
    N, H = shape
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1 \
            or H % n_heads:
        raise ValueError(f"attention: n_heads must be a positive divisor of {H}, got {n_heads!r}")
    d = H // int(n_heads)
    o = checks.seq_offsets("attention", offsets, N)
    if (cos is None) != (sin is None):
        raise ValueError("attention: cos and sin must be given together")
    if cos is not None:
        if d % 2:
            raise ValueError(f"attention: rotary embedding needs an even head dimension, got {d}")
        for name, a in (("cos", cos), ("sin", sin)):
            checks.f32(f"attention: {name}", a, 2)
            if a.shape != (N, d // 2):
                raise ValueError(f"attention: {name} has shape {a.shape}, expected {(N, d // 2)}")
    if out is None:
        out = np.empty((N, H), dtype=np.float32)
    else:
        checks.strided_rows("attention: out", out, shape)
        if not out.flags.writeable:
            raise ValueError("attention: out is read-only")
        if any(np.may_share_memory(out, a) for a in (q, k, v)):
            raise ValueError("attention: out overlaps q, k or v")
    runtime.compiled.attention.attention(q, k, v, o, int(n_heads), cos, sin, out, runtime.resolve(threads))
    return out


def segment_mean(x: np.ndarray, offsets: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Mean of each segment of rows (mean pooling of an unpadded batch), summed in double.

    Args:
        x: float32 ``(N, D)`` C-contiguous.
        offsets: integer ``(B+1,)``, ``0 = offsets[0] <= ... <= offsets[B] = N``.

    Returns:
        float32 ``(B, D)``; an empty segment gives a zero row.

    Raises:
        ValueError: wrong dtype / layout / rank, or bad offsets.
    """
    checks.f32("segment_mean: x", x, 2)
    o = checks.seq_offsets("segment_mean", offsets, x.shape[0])
    out = np.empty((o.shape[0] - 1, x.shape[1]), dtype=np.float32)
    runtime.compiled.attention.segment_mean(x, o, out, runtime.resolve(threads))
    return out
