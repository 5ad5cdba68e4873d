"""nomic-bert against its reference (the official NomicBert code, ../shared/fixtures):
f16 cosine >= 0.99999, quantized files where the llama.cpp peer lands, Matryoshka,
dynamic NTK rope scaling past the trained context, task prefixes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import NOMIC, NOMIC_FILES, cosine, load_golden
from lodevec.embedding import Encoder


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
