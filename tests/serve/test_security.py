"""Who may call the server and from where: API keys, Host / Origin, JSON-only bodies,
CORS, and the refusal to bind a non-loopback address without a key.  A real uvicorn on
127.0.0.1, spoken to over HTTP."""

from __future__ import annotations

import argparse

import httpx
import pytest

from conftest import NOMIC, error_of
from lodevec import errors
from lodevec.embedding import Embedder, Encoder
from lodevec.serve import BackgroundServer, create_app, run, security
from lodevec.serve.security import Security, is_loopback

MODEL = NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf"
FULL, READ = "full-key-0123", "read-key-4567"
DOC = {"documents": [{"id": "d1", "text": "The cat sat on the mat."}]}


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return Embedder(Encoder.from_gguf(MODEL, max_tokens=64))


@pytest.fixture(scope="module")
def keyed(emb, tmp_path_factory):
    """A server with a full key, a read key and a database."""
    db = str(tmp_path_factory.mktemp("db"))
    app = create_app(emb, db, security=Security(api_keys=(FULL,), read_keys=(READ,)))
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture(scope="module")
def open_server(emb, tmp_path_factory):
    """No key (the default): the Host, Origin and content-type checks still apply."""
    db = str(tmp_path_factory.mktemp("db"))
    with BackgroundServer(create_app(emb, db)) as srv:
        yield srv


@pytest.fixture(scope="module")
def cors_server(emb):
    app = create_app(emb, None, security=Security(api_keys=(FULL,),
                                                  cors_origins=("http://app.example",)))
    with BackgroundServer(app) as srv:
        yield srv


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


# ============================================================================ keys
def test_no_key_is_401(keyed):
    r = httpx.post(keyed.url + "/v1/embeddings", json={"input": "x"})
    err = error_of(r, 401, "missing_api_key", "Authorization: Bearer")
    assert err["type"] == "invalid_request_error"
    assert r.headers["www-authenticate"].startswith("Bearer")
    for path in ("/info", "/metrics", "/v1/models", "/documents/d1"):
        error_of(httpx.get(keyed.url + path), 401, "missing_api_key")


def test_wrong_key_is_401(keyed):
    for headers in (bearer("wrong"), bearer(FULL + "x"), {"authorization": f"Basic {FULL}"},
                    {"authorization": "Bearer"}):
        r = httpx.post(keyed.url + "/v1/embeddings", json={"input": "x"}, headers=headers)
        assert r.status_code == 401, (headers, r.text)
    error_of(httpx.post(keyed.url + "/v1/embeddings", json={"input": "x"}, headers=bearer("wrong")),
             401, "invalid_api_key", "not valid")


def test_read_key_on_a_write_route_is_403(keyed):
    r = httpx.post(keyed.url + "/documents", json=DOC, headers=bearer(READ))
    err = error_of(r, 403, "read_only_key", "only read")
    assert err["type"] == "permission_error"
    error_of(httpx.delete(keyed.url + "/documents/d1", headers=bearer(READ)), 403, "read_only_key")


def test_right_key_is_200(keyed):
    r = httpx.post(keyed.url + "/documents", json=DOC, headers=bearer(FULL), timeout=30)
    assert r.status_code == 200, r.text
    for key in (FULL, READ):  # both kinds read
        h = bearer(key)
        assert httpx.post(keyed.url + "/v1/embeddings", json={"input": "x"}, headers=h).status_code == 200
        r = httpx.post(keyed.url + "/search", json={"query": "cat", "k": 1}, headers=h, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["id"] == "d1", r.text
        assert httpx.get(keyed.url + "/documents/d1", headers=h).status_code == 200
        assert httpx.get(keyed.url + "/v1/models", headers=h).status_code == 200
        assert httpx.post(keyed.url + "/tokenize", json={"inputs": "x"}, headers=h).status_code == 200
        assert httpx.get(keyed.url + "/info", headers=h).status_code == 200
    assert httpx.delete(keyed.url + "/documents/d1", headers=bearer(FULL)).status_code == 200


def test_health_stays_open(keyed):
    r = httpx.get(keyed.url + "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_keys_are_compared_in_constant_time(monkeypatch):
    """Every key's digest goes through ``hmac.compare_digest``, matched or not."""
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    sec = Security(api_keys=("a", "b"), read_keys=("c",))
    sec.authorize("Bearer a", "write")
    assert len(calls) == 3
    with pytest.raises(errors.InputError):
        sec.authorize("Bearer nope", "read")
    assert len(calls) == 6
    assert "s3cret" not in repr(Security(api_keys=("s3cret",), read_keys=("s3cret-read",)))


def test_only_read_keys_means_no_one_writes():
    sec = Security(read_keys=("r",))
    sec.authorize("Bearer r", "read")
    with pytest.raises(errors.InputError, match="only read"):
        sec.authorize("Bearer r", "write")
    sec.authorize(None, "open")


def test_security_from_args(tmp_path, monkeypatch):
    p = argparse.ArgumentParser()
    run.add_arguments(p)
    monkeypatch.setenv("LODEVEC_API_KEY", "from-env")
    monkeypatch.delenv("LODEVEC_READ_API_KEY", raising=False)
    sec = run.security_from_args(p.parse_args([]))
    assert sec.has_keys and sec.api_keys == ("from-env",) and sec.read_keys == ()
    keys = tmp_path / "keys"
    keys.write_text("# the proxy's key\nfile-key-1\n\n  file-key-2  \n", encoding="utf-8")
    args = p.parse_args(["--api-key-file", str(keys), "--read-api-key", "r1", "--read-api-key", "r2",
                         "--cors-origin", "https://App.example:8443", "--allow-host", "Search.LAN"])
    sec = run.security_from_args(args)  # the options replace the environment's key
    assert sec.api_keys == ("file-key-1", "file-key-2") and sec.read_keys == ("r1", "r2")
    assert sec.cors_origins == ("https://app.example:8443",) and sec.allowed_hosts == ("search.lan",)
    monkeypatch.setenv("LODEVEC_READ_API_KEY", "read-env")
    monkeypatch.delenv("LODEVEC_API_KEY")
    assert run.security_from_args(p.parse_args([])).read_keys == ("read-env",)
    (tmp_path / "empty").write_text("# nothing\n", encoding="utf-8")
    bad = [["--api-key-file", str(tmp_path / "empty")], ["--api-key-file", str(tmp_path / "nope")],
           ["--api-key", " "], ["--api-key", "k", "--read-api-key", "k"],
           ["--cors-origin", "http://app.example/"], ["--cors-origin", "app.example"]]
    for argv in bad:
        with pytest.raises(errors.InputError):
            run.security_from_args(p.parse_args(argv))


def test_openai_client_with_an_api_key(keyed):
    openai = pytest.importorskip("openai")
    oa = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=READ, max_retries=0)
    res = oa.embeddings.create(input=["keyed client"], model="nomic-embed-text-v1.5")
    assert len(res.data[0].embedding) == 256
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
            input="x", model="m")


# ============================================================================ host / origin
def test_host_header_of_another_site_is_403(open_server):
    url = open_server.url + "/v1/embeddings"
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil"):
        r = httpx.post(url, json={"input": "x"}, headers={"host": host})
        error_of(r, 403, "host_not_allowed", host)
    error_of(httpx.get(open_server.url + "/health", headers={"host": "evil.example"}), 403,
             "host_not_allowed")
    for host in ("localhost", "localhost:1", "LOCALHOST:8080", "127.0.0.1", "127.0.0.2:99",
                 "[::1]:8080", f"127.0.0.1:{open_server.port}"):
        r = httpx.post(url, json={"input": "x"}, headers={"host": host})
        assert r.status_code == 200, (host, r.text)


def test_allowed_host_names(emb):
    app = create_app(emb, None, security=Security(allowed_hosts=("search.lan",)))
    with BackgroundServer(app) as srv:
        assert httpx.get(srv.url + "/health", headers={"host": "search.lan:443"}).status_code == 200
        assert httpx.get(srv.url + "/health", headers={"host": "other.lan"}).status_code == 403


def test_origin_of_another_site_is_403(open_server):
    url = open_server.url + "/v1/embeddings"
    for origin in ("http://evil.example", "null", "http://localhost:3000"):
        r = httpx.post(url, json={"input": "x"}, headers={"origin": origin})
        error_of(r, 403, "origin_not_allowed", "--cors-origin")
    # the server's own origin is not another site
    r = httpx.post(url, json={"input": "x"}, headers={"origin": open_server.url})
    assert r.status_code == 200, r.text


def test_the_blind_cross_site_write_is_refused(open_server):
    """The issue's request: JSON sent as text/plain from a foreign Origin and Host."""
    body = b'{"documents": [{"id": "evil", "text": "written from another site"}]}'
    r = httpx.post(open_server.url + "/documents", content=body, headers={
        "content-type": "text/plain", "origin": "http://evil.example", "host": "evil.example"})
    assert r.status_code == 403, r.text
    # each check alone refuses it too
    r = httpx.post(open_server.url + "/documents", content=body,
                   headers={"content-type": "text/plain"})
    error_of(r, 415, "unsupported_media_type", "application/json", "text/plain")
    assert httpx.get(open_server.url + "/documents/evil").status_code == 404


def test_bodies_must_be_declared_json(open_server):
    url = open_server.url + "/v1/embeddings"
    body = b'{"input": "x"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "application/jsonx", None):
        headers = {} if ctype is None else {"content-type": ctype}
        r = httpx.post(url, content=body, headers=headers)
        error_of(r, 415, "unsupported_media_type", "application/json")
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        assert httpx.post(url, content=body, headers={"content-type": ctype}).status_code == 200, ctype


# ============================================================================ binding
def test_non_loopback_bind_without_a_key_is_refused(emb, capsys):
    for host in ("0.0.0.0", "::", "192.168.1.10", "search.lan"):
        with pytest.raises(errors.InputError, match="without an API key"):
            Security().check_bind(host)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.53"):
        Security().check_bind(host)
    Security(api_keys=("k",)).check_bind("0.0.0.0")
    Security(insecure=True).check_bind("0.0.0.0")
    with pytest.raises(errors.InputError, match="--insecure"):
        BackgroundServer(create_app(emb, None), host="0.0.0.0")
    with pytest.raises(errors.InputError, match="without an API key"):
        run.serve(emb, None, "0.0.0.0", 0)
    srv = BackgroundServer(create_app(emb, None, security=Security(api_keys=("k",))), host="0.0.0.0")
    srv.stop()  # constructed: the key allows it

    from lodevec.cli import main

    assert main(["serve", "--model", str(MODEL), "--addr", "0.0.0.0:0"]) == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in capsys.readouterr().err


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "localhost.evil", "", "example.com"]))


# ============================================================================ CORS
PREFLIGHT = {"access-control-request-method": "POST",
             "access-control-request-headers": "authorization, content-type"}


def test_cors_is_off_by_default(open_server):
    r = httpx.options(open_server.url + "/v1/embeddings",
                      headers={"origin": "http://app.example", **PREFLIGHT})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_cors_origin_allows_that_site(cors_server):
    url = cors_server.url + "/v1/embeddings"
    r = httpx.options(url, headers={"origin": "http://app.example", **PREFLIGHT})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "http://app.example"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = httpx.post(url, json={"input": ["a", "b"]},
                   headers={"origin": "http://app.example", **bearer(FULL)})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
    # the key is still needed, and the 401 is readable by the page
    r = httpx.post(url, json={"input": "x"}, headers={"origin": "http://app.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
    # another site is still refused, preflight or not
    r = httpx.options(url, headers={"origin": "http://evil.example", **PREFLIGHT})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    error_of(httpx.post(url, json={"input": "x"}, headers={"origin": "http://evil.example",
                                                           **bearer(FULL)}), 403, "origin_not_allowed")
