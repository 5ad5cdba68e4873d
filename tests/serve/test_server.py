"""The HTTP server, end to end: a real uvicorn on 127.0.0.1, spoken to over HTTP.

The model is the tiny nomic fixture with ``max_tokens=64`` so truncation is cheap to
reach; the reference vectors come from a second, uncached ``Embedder`` on the same file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import NOMIC, error_of
from lodevec.embedding import Embedder, Encoder
from lodevec.serve import BackgroundServer, Limits, create_app, parse_addr

ROOT = Path(__file__).resolve().parents[2]
MODEL = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
MAX_TOKENS = 64
HAVE_STORE = importlib.util.find_spec("lodevec.store") is not None
needs_store = pytest.mark.skipif(not HAVE_STORE, reason="lodevec.store is not there yet")


def _embedder(cache_size: int = 50_000) -> Embedder:
    return Embedder(Encoder.from_gguf(MODEL, max_tokens=MAX_TOKENS), cache_size=cache_size)


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return _embedder()


@pytest.fixture(scope="module")
def ref() -> Embedder:
    return _embedder(cache_size=0)


@pytest.fixture(scope="module")
def server(emb):
    """Embeddings-only server with small limits (to reach them cheaply)."""
    app = create_app(emb, None, limits=Limits(max_inputs=32, max_body_bytes=256 * 1024))
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def store_server(emb, tmp_path_factory):
    if not HAVE_STORE:
        pytest.skip("lodevec.store is not there yet")
    db = tmp_path_factory.mktemp("db")
    with BackgroundServer(create_app(emb, str(db), collection="docs")) as srv:
        yield srv


def close(a, b, atol=2e-5) -> bool:
    return np.allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=atol)


# ============================================================================ embeddings
def test_embeddings_float_match_embedder(client, ref):
    texts = ["the cat sat on the mat", "Rust is a systems language", "ünïcödé text ✓"]
    r = client.post("/v1/embeddings", json={"input": texts, "model": "nomic-embed-text"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == MODEL.name  # the served model
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    want = ref.encode(texts, task="search_document")
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert got.shape == (3, 256) and close(got, want.embeddings)
    assert body["usage"] == {"prompt_tokens": sum(want.n_tokens), "total_tokens": sum(want.n_tokens)}
    assert "x-lodevec-truncated" not in r.headers


def test_embeddings_base64_single_string(client, ref):
    r = client.post("/v1/embeddings", json={"input": "hello base64", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]
    vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    assert close(vec, ref.embed("hello base64", task="search_document"))
    assert r.json()["model"] == MODEL.name  # no model given: the file's name


def test_dimensions_matryoshka(client, ref):
    r = client.post("/v1/embeddings", json={"input": ["short vectors"], "dimensions": 64})
    vec = np.array(r.json()["data"][0]["embedding"])
    assert vec.shape == (64,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    assert close(vec, ref.embed("short vectors", task="search_document", dim=64))


def test_task_prefixes(client, ref):
    def vec(task, text="what is rust?"):
        body = {"input": [text]} if task is None else {"input": [text], "task": task}
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 200, r.text
        return np.array(r.json()["data"][0]["embedding"]), r.json()["usage"]["prompt_tokens"]

    q, nq = vec("search_query")
    d, nd = vec(None)  # default: search_document
    raw, nraw = vec("none")
    assert close(q, ref.embed("what is rust?", task="search_query"))
    assert close(d, ref.embed("what is rust?", task="search_document"))
    assert close(raw, ref.embed("what is rust?", task="none"))
    assert not close(q, d, atol=1e-3)
    assert nraw < nq and nraw < nd  # the prefixes are tokens too
    # "none" embeds the text as given, so a hand-written prefix equals the task
    assert close(vec("none", "search_query: what is rust?")[0], q)


def test_truncation_flag_and_refusal(client, ref):
    long = " ".join(f"word{i}" for i in range(200))
    r = client.post("/v1/embeddings", json={"input": ["short", long]})
    assert r.status_code == 200, r.text
    assert r.headers["x-lodevec-truncated"] == "1"
    want = ref.encode(["short", long], task="search_document")
    assert want.n_tokens[1] == MAX_TOKENS and r.json()["usage"]["prompt_tokens"] == sum(want.n_tokens)
    assert close(r.json()["data"][1]["embedding"], want.embeddings[1])
    r = client.post("/v1/embeddings", json={"input": ["short", long], "truncate": False})
    error_of(r, 413, "input_too_long", "input[1]", f"maximum of {MAX_TOKENS}")


ERROR_CASES = [
    # (body, status, code, words in the message)
    (b"{not json", 400, "invalid_json", ["not valid JSON"]),
    (b"", 400, "invalid_json", ["empty"]),
    (b"\xff\xfe", 400, "invalid_json", ["not valid JSON"]),
    (b'["a"]', 422, "invalid_value", ["JSON object"]),
    (b'{"model": "x"}', 422, "invalid_value", ["'input' is required"]),
    (b'{"input": 3}', 422, "invalid_value", ["string or an array of strings"]),
    (b'{"input": {"a": 1}}', 422, "invalid_value", ["not an object"]),
    (b'{"input": ""}', 422, "invalid_value", ["input[0] is empty"]),
    (b'{"input": ["ok", "   "]}', 422, "invalid_value", ["input[1] is empty"]),
    (b'{"input": []}', 422, "invalid_value", ["empty array"]),
    (b'{"input": ["ok", null]}', 422, "invalid_value", ["input[1] is null"]),
    (b'{"input": ["ok", 3]}', 422, "invalid_value", ["input[1] is an integer"]),
    (b'{"input": [1, 2, 3]}', 422, "invalid_value", ["token ids", "text only"]),
    (b'{"input": [[1, 2], [3]]}', 422, "invalid_value", ["token ids"]),
    (b'{"input": "x", "dimensions": 100}', 422, "invalid_dimensions", ["256, 128, 64"]),
    (b'{"input": "x", "dimensions": "64"}', 422, "invalid_dimensions", ["256, 128, 64"]),
    (b'{"input": "x", "dimensions": true}', 422, "invalid_dimensions", ["256, 128, 64"]),
    (b'{"input": "x", "encoding_format": "int8"}', 422, "invalid_value", ["float or base64"]),
    (b'{"input": "x", "task": "chat"}', 422, "invalid_value", ["search_query"]),
    (b'{"input": "x", "model": 7}', 422, "invalid_value", ["'model' must be a string"]),
    (b'{"input": "x", "truncate": "no"}', 422, "invalid_value", ["true or false"]),
    (b'{"input": [' + b",".join([b'"t"'] * 33) + b"]}", 413, "too_many_inputs", ["33", "at most 32"]),
    (b'{"input": "' + b"a" * 300_000 + b'"}', 413, "body_too_large", ["at most 262144"]),
]


@pytest.mark.parametrize("body,status,code,words", ERROR_CASES,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_embeddings_errors(client, body, status, code, words):
    r = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    err = error_of(r, status, code, *words)
    assert err["type"] == "invalid_request_error"


def test_routing_errors_and_survival(client):
    error_of(client.get("/nope"), 404, "route_not_found")
    error_of(client.get("/v1/embeddings"), 405, "method_not_allowed")
    error_of(client.post("/search", json={"query": "x"}), 404, "collection_not_found", "--db")
    # after all the bad requests the same connection still serves good ones
    assert client.get("/health").json() == {"status": "ok"}


def test_openai_client(server, ref):
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    texts = ["openai client one", "openai client two"]
    res = oa.embeddings.create(input=texts, model="nomic-embed-text-v1.5")  # base64 on the wire
    assert [d.index for d in res.data] == [0, 1]
    assert close([d.embedding for d in res.data], ref.embed(texts, task="search_document"))
    assert res.usage.prompt_tokens == sum(ref.encode(texts, task="search_document").n_tokens)
    res = oa.embeddings.create(input="openai client one", model="m", dimensions=128,
                               encoding_format="float", extra_body={"task": "search_query"})
    assert close(res.data[0].embedding, ref.embed("openai client one", task="search_query", dim=128))
    with pytest.raises(openai.UnprocessableEntityError, match="256, 128, 64"):
        oa.embeddings.create(input="x", model="m", dimensions=100)


# ============================================================================ batching
def test_concurrent_requests_are_batched(server, ref):
    svc = server.app.state.service
    texts = [f"concurrent request {i} about topic {i * 7}" for i in range(16)]
    before = svc.batcher.stats()

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                     limits=httpx.Limits(max_connections=16)) as c:
            return await asyncio.gather(*(c.post("/v1/embeddings", json={"input": t}) for t in texts))

    responses = asyncio.run(run())
    after = svc.batcher.stats()
    assert all(r.status_code == 200 for r in responses)
    want = ref.embed(texts, task="search_document")
    for i, r in enumerate(responses):  # every client got its own text's vector
        assert close(r.json()["data"][0]["embedding"], want[i]), i
    batches = after["batches"] - before["batches"]
    assert after["requests"] - before["requests"] == 16
    assert batches < 16 and after["max_batch_size"] > 1, after


def test_a_request_is_tokenized_once(server, client, ref, monkeypatch):
    """One /v1/embeddings request: the tokenizer runs once, and the batcher's call gets
    those token ids (no second tokenization, no second prefix)."""
    svc = server.app.state.service
    tokenizer = svc.embedder.encoder.tokenizer
    tokenized, queued = [], []
    encode_batch, fn = tokenizer.encode_batch, svc.batcher.fn
    monkeypatch.setattr(tokenizer, "encode_batch",
                        lambda texts, *a: (tokenized.append(list(texts)), encode_batch(texts, *a))[1])
    monkeypatch.setattr(tokenizer, "count", lambda texts: pytest.fail("tokenized a second time"))
    monkeypatch.setattr(svc.batcher, "fn", lambda tok: (queued.append(tok), fn(tok))[1])
    texts = ["tokenized once", "and only once"]
    r = client.post("/v1/embeddings", json={"input": texts, "task": "search_query"})
    assert r.status_code == 200, r.text
    assert tokenized == [["search_query: tokenized once", "search_query: and only once"]]
    (tok,) = queued
    assert tok.texts == texts and tok.ids == ref.encoder.tokenize(texts, "search_query")
    assert r.json()["usage"]["prompt_tokens"] == sum(len(i) for i in tok.ids)
    assert close([d["embedding"] for d in r.json()["data"]], ref.embed(texts, task="search_query"))


# ============================================================================ observability
def test_health_info_metrics(client, server):
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/v1/embeddings", json={"input": "metrics warm-up"})
    client.post("/v1/embeddings", json={"input": "metrics warm-up"})  # a cache hit
    info = client.get("/info").json()
    assert info["model"] == MODEL.name and info["dimension"] == 256
    assert info["dims"] == [256, 128, 64] and info["max_tokens"] == MAX_TOKENS
    assert info["rows"] is None and info["status"] == "ready"
    from lodevec import kernels
    compute = info["compute"]
    assert compute["isa"] == kernels.kernel_info()["isa"] and compute["device"] == "cpu"
    assert compute["openmp"] == kernels.openmp_enabled() and compute["threads"] >= 1
    assert compute["int8_dot"] == kernels.kernel_info()["int8_dot"]
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'lodevec_http_requests_total{route="/v1/embeddings",method="POST",status="200"}' in text
    assert 'lodevec_http_requests_total{route="/v1/embeddings",method="POST",status="422"}' in text
    assert 'lodevec_http_request_duration_seconds_bucket{route="/v1/embeddings",le="+Inf"}' in text
    for name in ("lodevec_batch_size_bucket", "lodevec_batches_total", "lodevec_queue_depth",
                 "lodevec_cache_hits_total", "lodevec_cache_misses_total",
                 "lodevec_queue_wait_seconds_count", "lodevec_embedded_tokens_total"):
        assert f"\n{name}" in text, name
    values = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
              if ln and not ln.startswith("#")}
    assert values["lodevec_cache_hits_total"] >= 1 and values["lodevec_queue_depth"] == 0


# ============================================================================ store
@needs_store
def test_documents_search_delete_roundtrip(store_server, ref):
    docs = [{"id": "cat", "text": "The cat sat on the mat.", "metadata": {"lang": "en"}},
            {"id": "rust", "text": "Rust is a systems programming language."},
            {"id": "tea", "text": "Green tea is brewed at eighty degrees.", "source": "manual"}]
    with httpx.Client(base_url=store_server.url, timeout=30) as c:
        r = c.post("/documents", json={"documents": docs})
        assert r.status_code == 200, r.text
        assert r.json()["upserted"] == 3 and r.json()["ids"] == ["cat", "rust", "tea"]
        r = c.post("/documents", json=[{"id": "x", "text": "bare list form"}])  # bare array
        assert r.status_code == 200, r.text
        assert c.get("/info").json()["rows"] == 4

        query = "which language is for systems programming?"
        r = c.post("/search", json={"query": query, "k": 3})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 3
        assert set(results[0]) == {"id", "score", "text", "source", "chunk", "metadata"}
        # score = cosine similarity of search_query vs search_document vectors
        q = ref.embed(query, task="search_query")
        texts = {d["id"]: d["text"] for d in docs} | {"x": "bare list form"}
        for res in results:
            want = float(q @ ref.embed(texts[res["id"]], task="search_document"))
            assert abs(res["score"] - want) < 1e-4, res
        assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
        by_id = {x["id"]: x for x in c.post("/search", json={"query": query, "k": 10}).json()["results"]}
        assert by_id["cat"]["metadata"] == {"lang": "en"} and by_id["cat"]["source"] == "api"
        assert by_id["tea"]["source"] == "manual" and by_id["cat"]["chunk"] == 0

        r = c.post("/search", json={"query": query, "k": 10, "where": "source = 'manual'"})
        assert [x["id"] for x in r.json()["results"]] == ["tea"]
        r = c.post("/search", json={"query": "tea degrees", "k": 2, "hybrid": True})
        assert r.status_code == 200 and len(r.json()["results"]) >= 1, r.text
        exact = c.post("/search", json={"query": query, "k": 10, "exact": True}).json()["results"]
        assert [(x["id"], round(x["score"], 5)) for x in exact] == [
            (x["id"], round(x["score"], 5)) for x in by_id.values()]

        assert c.get("/documents/cat").json()["text"] == docs[0]["text"]
        r = c.delete("/documents/cat")
        assert r.status_code == 200 and r.json() == {"deleted": 1, "id": "cat"}
        error_of(c.delete("/documents/cat"), 404, "document_not_found", "'cat'")
        error_of(c.get("/documents/cat"), 404, "document_not_found")
        assert c.get("/info").json()["rows"] == 3
        # upsert replaces
        r = c.post("/documents", json={"documents": [{"id": "rust", "text": "Rust has no GC."}]})
        assert r.status_code == 200 and c.get("/info").json()["rows"] == 3
        assert c.get("/documents/rust").json()["text"] == "Rust has no GC."


@needs_store
@pytest.mark.parametrize("path,body,status,code,word", [
    ("/documents", {"documents": [{"id": "a"}]}, 422, "invalid_value", "documents[0].text"),
    ("/documents", {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 422,
     "invalid_value", "twice"),
    ("/documents", {"documents": [{"id": "a", "text": "x", "metadata": [1]}]}, 422, "invalid_value",
     "metadata"),
    ("/documents", {"documents": []}, 422, "invalid_value", "empty"),
    ("/documents", {"docs": []}, 422, "invalid_value", "documents"),
    ("/search", {"query": ""}, 422, "invalid_value", "'query'"),
    ("/search", {"query": "x", "k": 0}, 422, "invalid_value", "'k' must be in 1..1000"),
    ("/search", {"query": "x", "where": 5}, 422, "invalid_value", "'where'"),
    ("/search", {"query": "x", "exact": "yes"}, 422, "invalid_value", "'exact'"),
    ("/search", {"query": "x", "where": "no_such_column = 1"}, 422, "invalid_query", "filter"),
    ("/search", {"query": "x", "where": "source = = 'a'"}, 422, "invalid_query", "filter"),
])
def test_store_errors(store_server, path, body, status, code, word):
    r = httpx.post(store_server.url + path, json=body, timeout=30)
    error_of(r, status, code, word)


# ============================================================================ lifecycle
def test_overload_unavailable_and_graceful_shutdown(emb, ref, tmp_path):
    """The model call is held on a gate, so requests stay in flight as long as needed:
    429 when the queue is full, 503 once shutdown began, and the in-flight requests (and
    the store write) completing across the shutdown."""
    db = str(tmp_path / "db") if HAVE_STORE else None
    app = create_app(emb, db, limits=Limits(max_queue=4))
    svc = app.state.service
    gate = threading.Event()
    encode = svc.batcher.fn
    svc.batcher.fn = lambda tok: (gate.wait(30), encode(tok))[1]
    srv = BackgroundServer(app).start()
    results: dict[str, httpx.Response] = {}

    def post(name, path, body):
        results[name] = httpx.post(srv.url + path, json=body, timeout=30)

    def wait_for(cond):
        deadline = time.monotonic() + 10
        while not cond(svc.batcher.stats()):
            assert time.monotonic() < deadline, svc.batcher.stats()
            time.sleep(0.01)

    texts = ["in flight one", "in flight two", "in flight three"]
    running = threading.Thread(target=post, args=("emb", "/v1/embeddings", {"input": texts}))
    if HAVE_STORE:
        queued = threading.Thread(target=post, args=(
            "queued", "/documents", {"documents": [{"id": "late", "text": "written during shutdown"}]}))
    else:
        queued = threading.Thread(target=post, args=("queued", "/v1/embeddings", {"input": "q"}))
    try:
        running.start()
        wait_for(lambda st: st["in_flight"] == 3)  # held in the model call
        queued.start()
        wait_for(lambda st: st["queue_depth"] == 1)  # waiting behind it
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": ["a", "b", "c", "d"]}, timeout=30)
        error_of(r, 429, "overloaded", "queue is full")
        assert r.headers["retry-after"] == "1"

        svc.begin_shutdown()  # what SIGTERM does first
        error_of(httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}, timeout=30),
                 503, "unavailable", "stopping")
        r = httpx.get(srv.url + "/health", timeout=30)
        assert r.status_code == 503 and r.json() == {"status": "stopping"}
        srv.begin_stop()
        time.sleep(0.2)  # uvicorn is now waiting for the in-flight requests
        assert running.is_alive() and queued.is_alive()
        gate.set()
    finally:
        gate.set()
        srv.stop()
        running.join(30)
        queued.join(30)
    r = results["emb"]
    assert r.status_code == 200, r.text
    assert close([d["embedding"] for d in r.json()["data"]], ref.embed(texts, task="search_document"))
    assert results["queued"].status_code == 200, results["queued"].text
    assert svc.phase == "stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health", timeout=5)
    if HAVE_STORE:
        from lodevec.store import Database

        coll = Database(db).open("default")
        assert coll.count() == 1 and coll.get(["late"])


def test_sigterm_finishes_in_flight_requests(tmp_path):
    """The real thing: ``python -m lodevec serve`` gets SIGTERM while the model embeds
    two long texts (~3200 tokens, a good fraction of a second) and a store write waits
    behind them; both complete, and the process exits 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)  # the same lodevec this interpreter imports (the installed wheel in CI)
    cmd = [sys.executable, "-m", "lodevec", "serve", "--model", str(MODEL), "--addr", f"127.0.0.1:{port}",
           "--log-level", "warning"]
    if HAVE_STORE:
        cmd += ["--db", str(tmp_path / "db")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results: dict[str, httpx.Response] = {}

    def post(name, path, body):
        results[name] = httpx.post(url + path, json=body, timeout=30)

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        longs = [" ".join(f"token{i % 97} word{i % (89 - j)}" for i in range(400)) for j in range(2)]
        threads = [threading.Thread(target=post, args=("emb", "/v1/embeddings", {"input": longs}))]
        if HAVE_STORE:
            threads.append(threading.Thread(target=post, args=(
                "doc", "/documents", [{"id": "d1", "text": "stored while stopping"}])))
        threads[0].start()
        while httpx.get(url + "/info", timeout=5).json()["batcher"]["in_flight"] < 1:
            assert time.monotonic() < deadline and threads[0].is_alive(), "the forward was too quick"
            time.sleep(0.005)
        for t in threads[1:]:
            t.start()
        while len(threads) > 1 and httpx.get(url + "/info", timeout=5).json()["batcher"]["queue_depth"] < 1:
            assert time.monotonic() < deadline and threads[0].is_alive(), "the forward was too quick"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        assert proc.wait(30) == 0, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert results["emb"].status_code == 200 and len(results["emb"].json()["data"]) == 2
    if HAVE_STORE:
        from lodevec.store import Database

        assert results["doc"].status_code == 200, results["doc"].text
        assert Database(str(tmp_path / "db")).open("default").get(["d1"])


def test_startup_failure_is_reported(emb, monkeypatch):
    app = create_app(emb, None)

    async def boom():
        raise RuntimeError("cannot open the database")

    monkeypatch.setattr(app.state.service.batcher, "start", boom)
    with pytest.raises(RuntimeError, match="cannot open the database"):
        BackgroundServer(app).start()


def test_parse_addr():
    assert parse_addr("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_addr(":9000") == ("127.0.0.1", 9000)
    assert parse_addr("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_addr("localhost:http")


def test_serve_options(monkeypatch):
    """``lodevec serve``'s options reach ``serve``: limits, and ``--cache-size`` (which the
    removed ``python -m lodevec.server`` had) sizes the embedder's cache."""
    from lodevec.cli import main
    from lodevec.serve import run

    got = {}
    monkeypatch.setattr(run, "serve", lambda emb, db, host, port, **kw: got.update(
        emb=emb, db=db, host=host, port=port, **kw))
    assert main(["serve", "--model", str(MODEL), "--addr", ":9001", "--cache-size", "0",
                 "--max-queue", "7", "--no-truncate"]) == 0
    assert (got["host"], got["port"], got["collection"]) == ("127.0.0.1", 9001, "default")
    assert got["limits"] == Limits(max_queue=7, truncate=False)
    assert got["emb"].cache.max_entries == 0
