"""Embeddings against the reference implementations (../shared/fixtures, copied here).

f16 files: cosine >= 0.99999 to the reference.  Quantized files: at least the
llama.cpp peer's cosine to the reference minus 0.003, and >= 0.999 to the peer's
own vector.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MINILM_FILE, NOMIC, NOMIC_FILES, cosine, load_golden
from lodevec.embedding import Encoder


@pytest.fixture(scope="module")
def encoders():
    cache: dict[str, Encoder] = {}

    def get(path):
        key = str(path)
        if key not in cache:
            cache[key] = Encoder.from_gguf(path)
        return cache[key]

    return get


@pytest.mark.parametrize("fname", NOMIC_FILES)
def test_nomic_embeddings(encoders, nomic_golden, fname):
    enc = encoders(NOMIC / fname)
    texts = nomic_golden["texts"]
    got = enc.embed([t["text"] for t in texts], task="none")
    assert got.shape == (len(texts), 256) and got.dtype == np.float32
    for t, vec in zip(texts, got, strict=True):
        ref_cos = cosine(vec, t["embedding"])
        if fname.endswith("f16.gguf"):
            assert ref_cos >= 0.99999, (t["text"][:40], ref_cos)
        else:
            peer_ref = t["peer_cos_to_reference"][fname]
            assert ref_cos >= peer_ref - 0.003, (t["text"][:40], ref_cos, peer_ref)
            assert cosine(vec, t["peer"][fname]) >= 0.999, t["text"][:40]


def test_minilm_embeddings(encoders, minilm_golden):
    enc = encoders(MINILM_FILE)
    texts = minilm_golden["texts"]
    got = enc.embed([t["text"] for t in texts])
    for t, vec in zip(texts, got, strict=True):
        assert cosine(vec, t["embedding"]) >= 0.99999, t["text"][:40]


def test_pooled_before_normalising(encoders, nomic_golden):
    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    t = nomic_golden["texts"][0]
    pooled = enc.encode(t["text"], normalize=False).embeddings[0]
    ref = np.asarray(t["pooled"], dtype=np.float32)
    assert cosine(pooled, ref) >= 0.99999
    assert np.linalg.norm(pooled) == pytest.approx(np.linalg.norm(ref), rel=1e-3)


@pytest.mark.parametrize("dim", [128, 64])
def test_matryoshka(encoders, nomic_golden, dim):
    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    texts = nomic_golden["texts"]
    got = enc.embed([t["text"] for t in texts], dim=dim)
    assert got.shape == (len(texts), dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    for t, vec in zip(texts, got, strict=True):
        assert cosine(vec, t["matryoshka"][str(dim)]) >= 0.99999, t["text"][:40]


def test_long_text_uses_ntk_scaling(encoders):
    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    t = load_golden(NOMIC / "golden-long.json")["texts"][0]
    res = enc.encode(t["text"])
    assert res.n_tokens == [5226] and res.truncated == [False]
    assert cosine(res.embeddings[0], t["embedding"]) >= 0.99999
    for dim in ("128", "64"):
        assert cosine(enc.embed(t["text"], dim=int(dim)), t["matryoshka"][dim]) >= 0.99999


def test_without_ntk_the_long_text_would_differ(encoders):
    """The NTK check above can fail: the plain-base rope gives another vector."""
    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    t = load_golden(NOMIC / "golden-long.json")["texts"][0]
    ids = enc.tokenize(t["text"])[0]
    graph = enc.backend
    saved = graph.config
    import dataclasses

    graph.config = dataclasses.replace(saved, context_length=8192)  # no scaling below 8192
    try:
        plain = graph.forward([ids])[0]
    finally:
        graph.config = saved
    assert cosine(plain, t["embedding"]) < 0.99999


@pytest.mark.parametrize("path", [NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf", MINILM_FILE], ids=lambda p: p.name)
def test_batched_equals_single(encoders, nomic_golden, path):
    enc = encoders(path)
    texts = [t["text"] for t in nomic_golden["texts"][:12]] + ["short", "a somewhat longer text " * 20]
    batched = enc.embed(texts, batch_size=5)
    single = np.stack([enc.embed(t) for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-6)
    # order is restored after length sorting
    assert cosine(batched[3], single[3]) > 0.999999


def test_past_maximum_truncates_and_says_so(encoders):
    enc = encoders(MINILM_FILE)
    res = enc.encode(["word " * 700, "short"])
    assert res.truncated == [True, False]
    assert res.n_tokens[0] == 512
    assert np.isfinite(res.embeddings).all()


def test_nomic_truncates_at_8192(encoders):
    enc = Encoder.from_gguf(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf", max_tokens=300)
    res = enc.encode("word " * 400)
    assert res.truncated == [True] and res.n_tokens == [300]
    assert encoders(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf").max_tokens == 8192


def test_prefixes_added_once(encoders):
    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    q = enc.tokenize("What is the capital of France?", task="search_query")[0]
    again = enc.tokenize("search_query: What is the capital of France?", task="search_query")[0]
    assert q == again
    assert q[:5] == [101, 3945, 1035, 23032, 1024]  # [CLS] search _ query :
    assert enc.tokenize("x", task="none")[0] == [101, 1060, 102]
    a = enc.embed("What is the capital of France?", task="search_query")
    b = enc.embed("search_query: What is the capital of France?")
    assert cosine(a, b) > 0.999999
    with pytest.raises(ValueError, match="search_document"):
        enc.embed("x", task="query")


def test_minilm_has_no_prefixes(encoders):
    enc = encoders(MINILM_FILE)
    assert enc.tokenize("hi", task="search_query") == enc.tokenize("hi")
    assert enc.dims == (384,)


def test_invalid_dim(encoders):
    from lodevec.errors import DimensionError

    enc = encoders(NOMIC / "tiny-nomic-v1.5.f16.gguf")
    assert enc.dims == (256, 128, 64)
    with pytest.raises(DimensionError, match="choose one of 256, 128, 64"):
        enc.embed("x", dim=100)


def test_seed_ranking_minilm(encoders):
    """The real model ranks the Rust document first for "programming languages"."""
    from conftest import MINILM

    seed = load_golden(MINILM / "golden-seed.json")
    enc = encoders(MINILM_FILE)
    names = [name for name, _ in seed["seed"]["documents"]]
    docs = enc.embed([text for _, text in seed["seed"]["documents"]])
    scores = docs @ enc.embed(seed["seed"]["query"])
    ranking = [names[i] for i in np.argsort(-scores)]
    assert ranking == seed["seed_ranking"]
    # scores are cosine similarities: compare with the reference's own
    ref = dict(zip(seed["seed_ranking"], sorted(seed["seed_scores"], reverse=True), strict=True))
    for name, score in zip(names, scores, strict=True):
        assert score == pytest.approx(ref[name], abs=1e-4)


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
