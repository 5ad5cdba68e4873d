"""Engine properties every architecture shares: a text embeds the same alone or in any
batch, dimensions are validated, the cache changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MINILM_FILE, NOMIC, cosine
from lodevec.embedding import Encoder


@pytest.mark.parametrize("path", [NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf", MINILM_FILE], ids=lambda p: p.name)
def test_batched_equals_single(encoders, nomic_golden, path):
    enc = encoders(path)
    texts = [t["text"] for t in nomic_golden["texts"][:12]] + ["short", "a somewhat longer text " * 20]
    batched = enc.embed(texts, batch_size=5)
    single = np.stack([enc.embed(t) for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-6)
    # order is restored after length sorting
    assert cosine(batched[3], single[3]) > 0.999999


def test_invalid_dim(encoders):
    from lodevec.errors import DimensionError

    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    assert enc.dims == (256, 128, 64)
    with pytest.raises(DimensionError, match="choose one of 256, 128, 64"):
        enc.embed("x", dim=100)


def test_embedder_without_cache_matches_cached():
    """cache_size=0 skips hashing and caching but gives the same vectors and flags."""
    from lodevec.embedding import Embedder

    enc = Encoder.from_gguf(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf")
    texts = ["alpha beta", "gamma", "alpha beta"]
    plain, cached = Embedder(enc, cache_size=0), Embedder(enc, cache_size=10)
    a = plain.encode(texts, task="search_query")
    assert "digest" not in enc.model.__dict__  # the file was not hashed
    b = cached.encode(texts, task="search_query")
    assert "digest" in enc.model.__dict__
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert a.n_tokens == b.n_tokens and len(plain.cache) == 0 and len(cached.cache) == 2
