"""Q5_K weights on the int8 path, end to end: a Q5_K copy of nomic-tiny
(q5k_model.py) embeds inside the conformance bounds of the quantized fixtures, with
the exact float32 path of the same file as the peer, at every ISA level."""

from __future__ import annotations

import numpy as np
import pytest
from isa_levels import isa_level  # noqa: F401  (autouse: every test at every ISA level)
from q5k_model import Q5_K, write_q5k_model

from conftest import NOMIC, cosine
from lodevec import kernels
from lodevec.embedding import Encoder


@pytest.fixture(scope="module")
def q5k_file(tmp_path_factory):
    return write_q5k_model(NOMIC / "tiny-nomic-v1.5.f16.gguf", tmp_path_factory.mktemp("q5k") / "q5k.gguf")


@pytest.fixture
def enc(q5k_file, isa_level):  # noqa: F811
    if not isa_level.int8:
        pytest.skip(f"no int8 kernels at the {isa_level.level} level")
    before = kernels.get_matmul_mode()
    kernels.set_matmul_mode("auto")
    yield Encoder.from_gguf(q5k_file)
    kernels.set_matmul_mode(before)


def test_the_file_is_q5k(enc):
    types = {int(t.qtype) for t in enc.model.tensors.values()}
    assert types == {int(Q5_K), 0}                  # every matrix Q5_K, the norms (and token types) F32


def test_q5k_int8_embeddings_within_the_bounds(enc, nomic_golden):
    """As tests/arch: cos to the reference >= the peer's - 0.003 and cos to the peer >=
    0.999, the peer being the exact float32 path on the same file."""
    texts = [t["text"] for t in nomic_golden["texts"]]
    got = enc.embed(texts, task="none")
    kernels.set_matmul_mode("f32")
    exact = enc.embed(texts, task="none")
    kernels.set_matmul_mode("auto")
    assert not np.array_equal(got, exact)          # the int8 path ran
    for t, vec, peer in zip(nomic_golden["texts"], got, exact, strict=True):
        peer_ref = cosine(peer, t["embedding"])
        assert cosine(vec, t["embedding"]) >= peer_ref - 0.003, t["text"][:40]
        assert cosine(vec, peer) >= 0.999, t["text"][:40]


def test_q5k_batched_equals_single(enc, nomic_golden):
    texts = [t["text"] for t in nomic_golden["texts"][:12]] + ["short", "a somewhat longer text " * 20]
    batched = enc.embed(texts, batch_size=5)
    single = np.stack([enc.embed(t) for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-6)
