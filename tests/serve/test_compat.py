"""What clients assume of an embeddings server: OpenAI's ``/v1/models`` and model echo,
strict fields (OpenAI's own accepted), ``/search`` ``mode`` as in the Python API, and
Hugging Face TEI's ``/embed`` and ``/tokenize``."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from conftest import NOMIC, error_of
from lodevec.embedding import Embedder, Encoder
from lodevec.serve import BackgroundServer, create_app

MODEL = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
MAX_TOKENS = 64
DOCS = [{"id": "cat", "text": "The cat sat on the mat."},
        {"id": "rust", "text": "Rust is a systems programming language."},
        {"id": "tea", "text": "Green tea is brewed at eighty degrees."}]


def _embedder(cache_size: int = 50_000) -> Embedder:
    return Embedder(Encoder.from_gguf(MODEL, max_tokens=MAX_TOKENS), cache_size=cache_size)


@pytest.fixture(scope="module")
def ref() -> Embedder:
    return _embedder(cache_size=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("db"))
    with BackgroundServer(create_app(_embedder(), db, collection="docs")) as srv:
        r = httpx.post(srv.url + "/documents", json={"documents": DOCS}, timeout=30)
        assert r.status_code == 200, r.text
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def close(a, b, atol=2e-5) -> bool:
    return np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=atol)


# ============================================================================ OpenAI
def test_models_list(client, server):
    r = client.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    (m,) = body["data"]
    assert m["id"] == MODEL.name and m["object"] == "model" and m["owned_by"] == "lodevec"
    assert m["dimension"] == 256 and m["dims"] == [256, 128, 64] and m["max_tokens"] == MAX_TOKENS
    assert isinstance(m["created"], int)
    assert client.get(f"/v1/models/{MODEL.name}").json() == m
    error_of(client.get("/v1/models/text-embedding-3-small"), 404, "model_not_found", MODEL.name)


def test_models_with_the_openai_client(server):
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    assert [m.id for m in oa.models.list()] == [MODEL.name]
    assert oa.models.retrieve(MODEL.name).owned_by == "lodevec"
    with pytest.raises(openai.NotFoundError):
        oa.models.retrieve("gpt-4")


def test_the_served_model_is_echoed(client):
    for body in ({"input": "x", "model": "text-embedding-3-small"}, {"input": "x"}):
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 200 and r.json()["model"] == MODEL.name, r.text


def test_openai_fields_are_accepted(client, ref):
    r = client.post("/v1/embeddings", json={"input": ["a text"], "model": "m", "encoding_format": "float",
                                            "dimensions": 128, "user": "user-1234"})
    assert r.status_code == 200, r.text
    assert close(r.json()["data"][0]["embedding"], ref.embed("a text", task="search_document", dim=128))
    error_of(client.post("/v1/embeddings", json={"input": "x", "user": 5}), 422, "invalid_value", "'user'")


@pytest.mark.parametrize("path,body,field", [
    ("/v1/embeddings", {"input": "x", "inputs": "y"}, "inputs"),
    ("/v1/embeddings", {"input": "x", "normalise": True}, "normalise"),
    ("/embeddings", {"input": "x", "taks": "search_query"}, "taks"),
    ("/search", {"query": "x", "top_k": 3}, "top_k"),
    ("/search", {"query": "x", "filter": "source = 'a'"}, "filter"),
    ("/documents", {"documents": DOCS[:1], "upsert": True}, "upsert"),
    ("/documents", {"documents": [{"id": "a", "text": "x", "meta": {"lang": "en"}}]},
     "documents[0].meta"),
    ("/embed", {"inputs": "x", "input": "y"}, "input"),
    ("/tokenize", {"inputs": "x", "truncate": True}, "truncate"),
])
def test_unknown_fields_are_422_naming_them(client, path, body, field):
    err = error_of(client.post(path, json=body), 422, "unknown_field", f"'{field}'")
    assert err["param"] == field


# ============================================================================ search mode
def test_search_mode_like_the_python_api(client, server):
    coll = server.app.state.service.collection
    emb = server.app.state.service.embedder
    query = "which language is for systems programming?"

    def ids(body):
        r = client.post("/search", json={"query": query, "k": 3, **body})
        assert r.status_code == 200, r.text
        return [(x["id"], round(x["score"], 5)) for x in r.json()["results"]]

    q = emb.embed(query, task="search_query")
    for mode in ("vector", "hybrid", "fts"):
        want = [(x.id, round(x.score, 5)) for x in
                coll.search(q, k=3, query_text=query, mode=mode)]
        assert want and ids({"mode": mode}) == want, mode
    assert ids({}) == ids({"mode": "vector"}) == ids({"hybrid": False})
    assert ids({"hybrid": True}) == ids({"mode": "hybrid"}) == ids({"mode": "hybrid", "hybrid": True})
    assert ids({"mode": "fts", "hybrid": False}) == ids({"mode": "fts"})
    error_of(client.post("/search", json={"query": "x", "mode": "semantic"}), 422, "invalid_value",
             "vector, hybrid, fts")
    error_of(client.post("/search", json={"query": "x", "mode": "vector", "hybrid": True}), 422,
             "invalid_value", "contradicts")


# ============================================================================ TEI
def test_embed_shapes(client, ref):
    r = client.post("/embed", json={"inputs": "one text"})
    assert r.status_code == 200, r.text
    (vec,) = r.json()
    assert len(vec) == 256 and close(vec, ref.embed("one text", task="search_document"))
    texts = ["first text", "second text"]
    r = client.post("/embed", json={"inputs": texts, "normalize": True, "truncate": True,
                                    "truncation_direction": "Right"})
    assert np.asarray(r.json()).shape == (2, 256)
    assert close(r.json(), ref.embed(texts, task="search_document"))
    r = client.post("/embed", json={"inputs": texts, "prompt_name": "query", "dimensions": 64})
    assert close(r.json(), ref.embed(texts, task="search_query", dim=64))
    r = client.post("/embed", json={"inputs": ["x"], "prompt_name": "none"})
    assert close(r.json()[0], ref.embed("x", task="none"))


def test_embed_truncation_and_errors(client, ref):
    long = " ".join(f"word{i}" for i in range(200))
    r = client.post("/embed", json={"inputs": ["short", long]})
    assert r.status_code == 200 and r.headers["x-lodevec-truncated"] == "1"
    error_of(client.post("/embed", json={"inputs": [long], "truncate": False}), 413, "input_too_long",
             "inputs[0]")
    error_of(client.post("/embed", json={"inputs": "x", "normalize": False}), 422, "invalid_value",
             "unit-length")
    error_of(client.post("/embed", json={"inputs": "x", "truncation_direction": "Left"}), 422,
             "invalid_value", "right")
    error_of(client.post("/embed", json={"inputs": "x", "prompt_name": "chat"}), 422, "invalid_value",
             "search_query")
    error_of(client.post("/embed", json={"input": "x"}), 422, "unknown_field", "'input'")
    error_of(client.post("/embed", json={"inputs": []}), 422, "invalid_value", "'inputs'")


def test_tokenize_shape(client, ref):
    r = client.post("/tokenize", json={"inputs": "Hello world"})
    assert r.status_code == 200, r.text
    (tokens,) = r.json()
    assert all(set(t) == {"id", "text", "special", "start", "stop"} for t in tokens)
    assert [t["id"] for t in tokens] == ref.encoder.tokenize(["Hello world"], "search_document")[0]
    assert tokens[0] == {"id": tokens[0]["id"], "text": "[CLS]", "special": True, "start": None,
                         "stop": None}
    assert tokens[-1]["text"] == "[SEP]" and tokens[-1]["special"]
    prompted = "search_document: Hello world"  # the tokens /embed embeds, prefix included
    for t in tokens[1:-1]:
        assert not t["special"] and prompted[t["start"]:t["stop"]] == t["text"]
    assert [t["text"] for t in tokens[-3:-1]] == ["Hello", "world"]


def test_tokenize_options_and_byte_offsets(client, ref):
    text = "héllo wörld ✓ ok"
    r = client.post("/tokenize", json={"inputs": [text, "b"], "prompt_name": "none",
                                       "add_special_tokens": False})
    assert r.status_code == 200, r.text
    first, second = r.json()
    assert [t["text"] for t in second] == ["b"]
    raw = text.encode("utf-8")
    assert not any(t["special"] for t in first)
    for t in first:  # byte offsets, as TEI gives them
        assert raw[t["start"]:t["stop"]].decode("utf-8") == t["text"], t
    assert first[-1]["stop"] == len(raw)
    # not truncated: every token is listed
    long = " ".join(f"word{i}" for i in range(200))
    (tokens,) = client.post("/tokenize", json={"inputs": long}).json()
    assert len(tokens) > MAX_TOKENS
