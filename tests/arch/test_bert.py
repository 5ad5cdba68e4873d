"""bert (all-MiniLM-L6-v2) against sentence-transformers: cosine >= 0.99999, the seed
ranking, no prefixes, truncation at the position table."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MINILM_FILE, cosine, load_golden


def test_minilm_embeddings(encoders, minilm_golden):
    enc = encoders(MINILM_FILE)
    texts = minilm_golden["texts"]
    got = enc.embed([t["text"] for t in texts])
    for t, vec in zip(texts, got, strict=True):
        assert cosine(vec, t["embedding"]) >= 0.99999, t["text"][:40]


def test_past_maximum_truncates_and_says_so(encoders):
    enc = encoders(MINILM_FILE)
    res = enc.encode(["word " * 700, "short"])
    assert res.truncated == [True, False]
    assert res.n_tokens[0] == 512
    assert np.isfinite(res.embeddings).all()


def test_minilm_has_no_prefixes(encoders):
    enc = encoders(MINILM_FILE)
    assert enc.tokenize("hi", task="search_query") == enc.tokenize("hi")
    assert enc.dims == (384,)


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
