"""The README's client examples, run as written against a keyed server on 127.0.0.1.

Each example is the ``python`` block after a ``<!-- tested by tests/serve/test_clients.py:
NAME -->`` line of README.md; only its URL is pointed at the test server.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import NOMIC
from lodevec.embedding import Embedder, Encoder
from lodevec.serve import BackgroundServer, create_app
from lodevec.serve.security import Security

README = Path(__file__).resolve().parents[2] / "README.md"
MODEL = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
README_URL = "http://127.0.0.1:8080/v1"


def example(name: str) -> str:
    """The README's code block tested under ``name``."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- tested by tests/serve/test_clients\.py: " + re.escape(name)
                  + r" -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README.md has no example {name!r}"
    assert README_URL in m.group(1)
    return m.group(1)


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return Embedder(Encoder.from_gguf(MODEL))


@pytest.fixture(scope="module")
def server(emb):
    # the README's read key; a full key exists too, as in a real deployment
    app = create_app(emb, None, security=Security(api_keys=("full",), read_keys=("my-read-key",)))
    with BackgroundServer(app) as srv:
        yield srv


def run_example(name: str, server) -> dict:
    code = example(name).replace(README_URL, f"{server.url}/v1")
    scope: dict = {}
    exec(compile(code, f"README.md:{name}", "exec"), scope)  # noqa: S102 - the README's own code
    return scope


def close(a, b) -> bool:
    return np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=2e-5)


def test_readme_langchain(server, emb):
    pytest.importorskip("langchain_openai")
    got = run_example("langchain", server)
    texts = ["Paris is the capital of France.", "Rust is fast."]
    assert close(got["doc_vectors"], emb.embed(texts, task="search_document"))
    assert close(got["query_vector"], emb.embed("What is the capital of France?", task="search_query"))


def test_readme_llamaindex(server, emb):
    pytest.importorskip("llama_index.embeddings.openai_like")
    got = run_example("llamaindex", server)
    assert close(got["doc_vector"], emb.embed("Paris is the capital of France.", task="search_document"))
    assert close(got["query_vector"], emb.embed("What is the capital of France?", task="search_query"))

