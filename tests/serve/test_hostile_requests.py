"""Hostile request content (issue 16, items 8 and 10): lone surrogates are 4xx, ids with
any character round-trip, ``/metrics`` labels come from a closed set, control-only
texts are refused like empty ones, a ``where`` with a comment is refused."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from conftest import NOMIC, error_of
from lodevec.embedding import Embedder, Encoder
from lodevec.serve import BackgroundServer, create_app

MODEL = NOMIC / "tiny-nomic-v1.5.f16.gguf"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    emb = Embedder(Encoder.from_gguf(MODEL, max_tokens=64))
    db = tmp_path_factory.mktemp("hostile") / "db"
    with BackgroundServer(create_app(emb, str(db))) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv):
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c


def _raw(client, path: str, body: str) -> httpx.Response:
    """POST a JSON text as written (``\\ud800`` escapes stay escapes)."""
    return client.post(path, content=body.encode("ascii"), headers=JSON)


@pytest.mark.parametrize("path,body", [
    ("/v1/embeddings", '{"input": "ok \\ud800"}'),
    ("/v1/embeddings", '{"input": ["fine", "\\udfff"]}'),
    ("/embed", '{"inputs": "\\ud800"}'),
    ("/tokenize", '{"inputs": "a\\ud800"}'),
    ("/search", '{"query": "\\ud800"}'),
    ("/search", '{"query": "\\ud800", "mode": "fts"}'),
    ("/documents", '{"documents": [{"id": "\\ud800", "text": "ok"}]}'),
    ("/documents", '{"documents": [{"id": "d", "text": "ok \\ud800"}]}'),
    ("/documents", '{"documents": [{"id": "d", "text": "ok", "metadata": {"k": "\\ud800"}}]}'),
])
def test_lone_surrogates_are_4xx(client, path, body):
    r = _raw(client, path, body)
    assert 400 <= r.status_code < 500, r.text
    assert "not valid Unicode" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("text", ["\x00", "\x00\x01\x7f", " \u200b\n\x00"])
def test_control_only_texts_are_refused_like_empty_ones(client, text):
    error_of(client.post("/v1/embeddings", json={"input": text}), 422, "invalid_input", "empty")
    r = client.post("/documents", json={"documents": [{"id": "c", "text": text}]})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("doc_id", ["line\nbreak", "tab\there", "\nleading", "slash/and?query#frag",
                                    "percent%2F", "space and ünïcödé"])
def test_ids_with_any_character_round_trip(client, doc_id):
    r = client.post("/documents", json={"documents": [{"id": doc_id, "text": "round trip"}]})
    assert r.status_code == 200, r.text
    path = "/documents/" + urllib.parse.quote(doc_id, safe="")
    got = client.get(path)
    assert got.status_code == 200, got.text
    assert got.json()["id"] == doc_id
    assert client.delete(path).status_code == 200
    assert client.get(path).status_code == 404


def _invent(client, names: range) -> str:
    for i in names:
        client.request(f"BREW{i}", "/v1/embeddings")
        client.request(f"BREW{i}", f"/no/such/route/{i}")
        client.get(f"/no/such/route/{i}")
    client.get("/metrics")
    return client.get("/metrics").text


def test_metrics_labels_are_a_closed_set(client):
    before = _invent(client, range(3))
    page = _invent(client, range(3, 250))
    assert "BREW" not in page and "/no/such" not in page
    assert 'method="other"' in page
    assert len(page.splitlines()) == len(before.splitlines())  # no new series
    assert len(page) < len(before) + 200  # only counts grew


def test_where_with_a_comment_is_refused(client):
    client.post("/documents", json={"documents": [{"id": "w", "text": "where test"}]})
    err = error_of(client.post("/search", json={"query": "where", "where": "chunk = 0 -- x"}),
                   422, "invalid_query", "chunk = 0 -- x")
    assert "comment" in err["message"]
