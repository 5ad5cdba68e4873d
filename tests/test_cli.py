"""The CLI, called as ``main(argv)``: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import MINILM_FILE, NOMIC, cosine
from conftest import run_cli as run

Q4 = str(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf")
F16 = str(NOMIC / "tiny-nomic-v1.5.f16.gguf")




def test_embed_jsonl(tmp_path, nomic_golden):
    texts = nomic_golden["texts"][:4]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "text": t["text"]}) + "\n" for i, t in enumerate(texts))
                   + "\n")  # a trailing blank line is skipped
    code, out = run(["embed", "--model", F16, "--task", "none", "--input", str(inp)])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    for r, t in zip(rows, texts, strict=True):
        assert len(r["embedding"]) == 256
        assert r["n_tokens"] == t["n_tokens"] and r["truncated"] is False
        assert cosine(r["embedding"], t["embedding"]) >= 0.99999


def test_embed_stdin_task_and_dim(monkeypatch):
    code, out = run(["embed", "--model", F16, "--task", "search_query", "--dim", "64"],
                    '{"text": "What is the capital of France?"}\n', monkeypatch)
    assert code == 0
    row = json.loads(out)
    assert row["id"] is None and len(row["embedding"]) == 64 and row["n_tokens"] == 13
    assert np.linalg.norm(row["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_embed_truncation_flag(monkeypatch):
    code, out = run(["embed", "--model", str(MINILM_FILE)], json.dumps({"text": "word " * 700}) + "\n",
                    monkeypatch)
    assert code == 0
    row = json.loads(out)
    assert row["truncated"] is True and row["n_tokens"] == 512


@pytest.mark.parametrize("line,message", [
    ("not json", "<stdin>:1: not valid JSON"),
    ('{"id": 1}', '<stdin>:1: "text" is missing or not a string'),
    ('[1, 2]', "<stdin>:1: expected a JSON object"),
    ('{"text": "   "}', "<stdin>:1: text is empty"),
])
def test_embed_bad_lines_exit_2(monkeypatch, capsys, line, message):
    code, out = run(["embed", "--model", Q4], line + "\n", monkeypatch)
    assert code == 2 and out == ""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_embed_not_gguf_exit_2(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "x.gguf"
    bad.write_text("nope")
    code, _ = run(["embed", "--model", str(bad)], '{"text": "a"}\n', monkeypatch)
    assert code == 2
    assert capsys.readouterr().err == f"error: {bad}: not a GGUF file: starts with b'nope', expected the magic b'GGUF'\n"


def test_embed_invalid_utf8_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "caf\xe9"}\n')
    code, _ = run(["embed", "--model", Q4, "--input", str(p)])
    assert code == 2 and "not valid UTF-8" in capsys.readouterr().err


def test_bad_dim_exit_2(monkeypatch, capsys):
    code, _ = run(["embed", "--model", Q4, "--dim", "100"], '{"text": "a"}\n', monkeypatch)
    assert code == 2
    assert "dimension 100 is not available" in capsys.readouterr().err


def test_usage_error_exit_2(capsys):
    code, _ = run(["embed", "--task", "bogus"])
    assert code == 2


def test_tokenize(monkeypatch, nomic_golden):
    t = nomic_golden["texts"][5]
    code, out = run(["tokenize", "--model", Q4], json.dumps({"id": "x", "text": t["text"]}) + "\n", monkeypatch)
    assert code == 0 and json.loads(out) == {"id": "x", "ids": t["ids"]}


def test_model_info():
    code, out = run(["model", "info", Q4])
    info = json.loads(out)
    assert code == 0
    assert info["architecture"] == "nomic-bert" and info["embedding_dim"] == 256
    assert info["n_layers"] == 2 and info["context_length"] == 2048 and info["vocab_size"] == 30528
    assert info["tensor_types"] == {"F32": 11, "Q4_K": 8, "Q6_K": 3}


def test_bench_json():
    code, out = run(["bench", "--model", Q4, "--seq-len", "16,64", "--batch", "1,2", "--threads", "1",
                     "--min-time", "0", "--json"])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["seq_len"], r["batch"]) for r in rows] == [(16, 1), (16, 2), (64, 1), (64, 2)]
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["ms_per_batch"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["seq_len"] * r["batch"] / r["ms_per_batch"] * 1e3, rel=0.01)


def test_bench_search_json(capsys):
    code, out = run(["bench", "search", "--rows", "1500", "--dim", "32", "--queries", "20", "--json"])
    assert code == 0
    rows = {r["config"]: r for r in map(json.loads, out.splitlines())}
    assert list(rows) == ["insert", "upsert_single", "resident", "exact", "flat", "IVF_HNSW_SQ",
                          "fts", "hybrid", "vector+where", "vector+where-lancedb", "vector+new-where"]
    assert rows["insert"]["insert_rows_per_s"] > 0 and rows["IVF_HNSW_SQ"]["build_s"] > 0
    for name, r in rows.items():
        assert r["rows"] == 1500 and r["dim"] == 32 and r["k"] == 10
        assert {"config", "p50_ms", "p95_ms", "recall_at_10"} <= set(r)
        if name != "insert":
            assert 0 < r["p50_ms"] <= r["p95_ms"], r
    # exact paths against the bench's own numpy top-k: every neighbour found
    assert rows["exact"]["recall_at_10"] == rows["flat"]["recall_at_10"] == 1.0
    assert rows["resident"]["recall_at_10"] >= 0.95 and rows["IVF_HNSW_SQ"]["recall_at_10"] >= 0.9
    code, out = run(["bench", "search", "--rows", "300", "--dim", "8", "--queries", "5",
                     "--configs", "exact", "--json"])
    assert code == 0 and [json.loads(line)["config"] for line in out.splitlines()][2:4] == ["exact", "fts"]
    code, _ = run(["bench", "search", "--configs", "hnsw"])
    assert code == 2 and "unknown search bench config hnsw" in capsys.readouterr().err


def test_console_script_runs():
    """The installed ``lodevec`` entry point (beside this interpreter) works."""
    from pathlib import Path

    script = Path(sys.executable).parent / "lodevec"
    if not script.exists():
        pytest.skip(f"no installed console script at {script} (run through .ci/run)")
    r = subprocess.run([str(script), "model", "info", Q4], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '"nomic-bert"' in r.stdout
    r = subprocess.run([str(script), "model", "info", __file__], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "not a GGUF file" in r.stderr


def test_serve_command(tmp_path):
    """`lodevec serve` starts the HTTP API on the model recorded with the table, and stops on SIGTERM."""
    import signal
    import socket
    import time

    import httpx

    db = str(tmp_path / "db")
    model = str(MINILM_FILE)  # real weights, so the ranking means something
    assert run(["index", "--db", db, "--model", model, "--input", str(_records(tmp_path)), "--json"])[0] == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lodevec", "serve", "--db", db, "--addr", f"127.0.0.1:{port}",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
        assert info["rows"] == 2
        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"query": "baking a loaf", "k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["id"] == "b"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _records(tmp_path):
    p = tmp_path / "records.jsonl"
    p.write_text(json.dumps({"id": "a", "text": "Rust is a programming language"}) + "\n"
                 + json.dumps({"id": "b", "text": "bread is baked from flour and water"}) + "\n")
    return p
