"""Indexing folders and records, re-indexing incrementally, and searching (CLI + API)."""

from __future__ import annotations

import io
import json
import multiprocessing as mp

import pytest

from conftest import MINILM, MINILM_FILE, NOMIC, load_golden
from conftest import run_cli as run
from lodevec import errors
from lodevec.embedding import Embedder
from lodevec.ingest import Indexer, chunk_text, walk_files
from lodevec.store import Database

Q4 = str(NOMIC / "tiny-nomic-v1.5.Q4_K_M.gguf")




@pytest.fixture(scope="module")
def minilm():
    return Embedder.from_gguf(MINILM_FILE)


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "rust.md").write_text("# Rust\n\nRust is a systems programming language focused on safety and speed.\n")
    (root / "cooking.txt").write_text("To bake bread, mix flour, water, salt and yeast, then knead.\n")
    (root / "sub" / "garden.md").write_text("Tomatoes need sun, water and well drained soil.\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100))
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "empty.md").write_text("")
    (root / ".gitignore").write_text("ignored/\n*.log\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "secret.md").write_text("should never be indexed")
    (root / "debug.log").write_text("log line")
    return root


def test_walk_respects_gitignore(notes):
    names = sorted(p.name for p in walk_files([notes]))
    assert names == ["cooking.txt", "empty.md", "garden.md", "image.png", "latin1.txt", "rust.md"]


def test_chunking_in_tokens_with_overlap(minilm):
    tok = minilm.encoder.tokenizer
    text = "\n".join(f"line {i} has some words in it" for i in range(200))
    chunks = chunk_text(text, tok.offsets(text), chunk_tokens=64, overlap=16)
    assert len(chunks) > 5
    for c in chunks:
        assert len(tok.offsets(c)) <= 64 + 8  # widened to a line start at most by a few pieces
    # consecutive chunks share text (overlap) and together cover the whole text
    assert chunks[0].split()[-1] in chunks[1]
    assert chunks[-1].endswith("line 199 has some words in it")
    assert chunks[0].startswith("line 0")


def test_index_search_and_reindex(tmp_path, notes):
    db = str(tmp_path / "db")
    code, out = run(["index", "--db", db, "--model", str(MINILM_FILE), "--json", str(notes)])
    assert code == 0, out
    s = json.loads(out)
    assert s["files"] == 6 and s["chunks_embedded"] == 4 and s["chunks_removed"] == 0
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in s["skipped"]}
    assert reasons["image.png"] == "binary file"
    assert "latin1.txt" not in reasons  # decoded with the detected encoding
    assert reasons["empty.md"] == "empty file"

    code, out = run(["search", "--db", db, "--json", "-k", "3", "how do I bake bread"])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0]["source"].endswith("cooking.txt") and rows[0]["chunk"] == 0
    assert rows[0]["score"] > rows[1]["score"] and -1.0 <= rows[-1]["score"] <= 1.0
    assert set(rows[0]) == {"id", "score", "text", "source", "path", "chunk", "line_start",
                            "line_end", "metadata"}
    assert rows[0]["line_start"] == rows[0]["line_end"] == 1

    # unchanged files cost no model time; a changed file is re-embedded; a removed file's chunks go
    (notes / "sub" / "garden.md").write_text("Potatoes grow in cool weather.\n")
    (notes / "rust.md").unlink()
    code, out = run(["index", "--db", db, "--model", str(MINILM_FILE), "--json", str(notes)])
    s = json.loads(out)
    assert s["chunks_embedded"] == 1 and s["chunks_skipped"] == 2 and s["chunks_removed"] == 1
    code, out = run(["stats", "--db", db, "--json"])
    st = json.loads(out)
    assert st["rows"] == 3

    code, out = run(["search", "--db", db, "--json", "-k", "1", "--where", "source LIKE '%garden.md'", "vegetables"])
    assert json.loads(out)["text"].startswith("Potatoes")


def test_seed_case_records(tmp_path, monkeypatch):
    """all-MiniLM-L6-v2 ranks the Rust document first for "programming languages"."""
    seed = load_golden(MINILM / "golden-seed.json")
    lines = "".join(json.dumps({"id": name, "text": text}) + "\n" for name, text in seed["seed"]["documents"])
    db = str(tmp_path / "db")
    code, _ = run(["index", "--db", db, "--model", str(MINILM_FILE), "--input", "-", "--json"], lines, monkeypatch)
    assert code == 0
    code, out = run(["search", "--db", db, "--json", seed["seed"]["query"]])
    ranking = [json.loads(line)["id"] for line in out.splitlines()]
    assert ranking == seed["seed_ranking"]
    code, out = run(["search", "--db", db, "--json", "--hybrid", seed["seed"]["query"]])
    assert json.loads(out.splitlines()[0])["id"] == "doc3"
    code, out = run(["search", "--db", db, "--json", "--exact", seed["seed"]["query"]])
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == seed["seed_ranking"]


def test_records_validated_before_writing(tmp_path, minilm):
    coll = Database(tmp_path / "db").create_or_open(identity=minilm.identity())
    ix = Indexer(coll, minilm)
    with pytest.raises(errors.RecordError, match="record 2 \\(id b\\): \"text\" is missing or empty"):
        ix.index_records([{"id": "a", "text": "fine"}, {"id": "b", "text": ""}])
    assert coll.count() == 0
    with pytest.raises(errors.RecordError, match="id 'a' appears more than once"):
        ix.index_records([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    assert coll.count() == 0


def test_another_model_is_refused(tmp_path, notes, capsys):
    db = str(tmp_path / "db")
    assert run(["index", "--db", db, "--model", str(MINILM_FILE), "--json", str(notes / "rust.md")])[0] == 0
    code, _ = run(["index", "--db", db, "--model", Q4, str(notes / "cooking.txt")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "all-MiniLM-L6-v2.f16.gguf" in err


def test_missing_database(tmp_path, capsys):
    code, _ = run(["search", "--db", str(tmp_path / "nope"), "anything"])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_empty_index_arguments(tmp_path, capsys):
    code, _ = run(["index", "--db", str(tmp_path / "db"), "--model", Q4])
    assert code == 2 and "give files or folders" in capsys.readouterr().err


def _index_proc(db, folder, model):
    from lodevec.cli import main as m

    return m(["index", "--db", db, "--model", model, "--json", folder], out=io.StringIO())


def test_two_index_processes(tmp_path):
    """Concurrent index runs on one database leave it consistent (commits retry)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d, topic in ((a, "apples"), (b, "boats")):
        d.mkdir()
        for i in range(6):
            (d / f"{i}.txt").write_text(f"note {i} about {topic} " * 5)
    db = str(tmp_path / "db")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        codes = pool.starmap(_index_proc, [(db, str(a), Q4), (db, str(b), Q4)])
    assert codes == [0, 0]
    stats = Database(db).open().stats()
    assert stats["rows"] == 12 and stats["sources"] == 12


def test_interrupted_index_loses_and_duplicates_nothing(tmp_path, minilm):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(8):
        (folder / f"{i}.md").write_text(f"document number {i} talks about topic {i}\n" * 3)
    coll = Database(tmp_path / "db").create_or_open(identity=minilm.identity())

    class Stop(Exception):
        pass

    def stop_after_three(files, chunks, tokens):
        if chunks >= 3:
            raise Stop

    with pytest.raises(Stop):
        Indexer(coll, minilm, batch_size=1, progress=stop_after_three).index_paths([folder])
    assert 0 < coll.count() < 8
    s = Indexer(coll, minilm, batch_size=1).index_paths([folder])
    assert coll.count() == 8 and s.chunks_skipped == 3 and s.chunks_embedded == 5
    rows = coll.get([f"{folder.resolve() / f'{i}.md'}#0" for i in range(8)])
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
