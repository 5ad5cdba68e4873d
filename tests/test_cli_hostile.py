"""``index --input`` and ``embed`` against hostile records (issue 16, items 7 and 10):
every record validated before the first write, errors naming ``file:LINE``, deep JSON
and lone surrogates a clean exit 2, no empty collection left behind."""

from __future__ import annotations

import io
import json

import pytest

from conftest import NOMIC
from conftest import run_cli as run
from lodevec import errors
from lodevec.cli import _print_json
from lodevec.store import Database

F16 = str(NOMIC / "tiny-nomic-v1.5.f16.gguf")


def _jsonl(tmp_path, lines: list[str], name: str = "in.jsonl") -> str:
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(p)


def _index(tmp_path, path: str, capsys) -> tuple[int, str]:
    code, _ = run(["index", "--db", str(tmp_path / "db"), "--model", F16, "--input", path])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def _no_collection(tmp_path) -> None:
    db = tmp_path / "db"
    assert not db.exists() or Database(db).collection_names() == []


def test_a_bad_record_late_in_the_file_writes_nothing_and_names_its_line(tmp_path, capsys):
    lines = [json.dumps({"id": f"r{i}", "text": f"hello {i}"}) for i in range(400)]
    lines[300] = '{"id": "r300", "text": "t", "metadata": {"x": NaN}}'
    lines.insert(10, "")  # blank lines are skipped but still counted
    path = _jsonl(tmp_path, lines)
    code, err = _index(tmp_path, path, capsys)
    assert code == 2
    assert f"{path}:302 (id r300): metadata is not JSON" in err, err
    _no_collection(tmp_path)


@pytest.mark.parametrize("line,words", [
    ('{"id": "a", "text": "x", "metadata": ' + "[" * 50_000 + "]" * 50_000 + "}",
     "nested too deeply"),
    ('{"id": "a", "text": "ok \\ud800"}', "\"text\" is not valid Unicode"),
    ('{"id": "\\ud800", "text": "ok"}', "\"id\" is not valid Unicode"),
    ('{"id": 1.5, "text": "ok"}', '"id" is a float, not a string or integer'),
    ('{"id": "c", "text": "\\u0000\\u0001\\u0002"}', '"text" is missing or empty'),
])
def test_hostile_records_are_a_clean_exit_2(tmp_path, capsys, line, words):
    path = _jsonl(tmp_path, ['{"id": "fine", "text": "fine"}', line])
    code, err = _index(tmp_path, path, capsys)
    assert code == 2 and f"{path}:2" in err and words in err, err
    _no_collection(tmp_path)


@pytest.mark.parametrize("line,words", [
    ('{"text": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
    ('{"id": 1, "text": "ok \\ud800"}', "not valid Unicode"),
    ('{"id": "\\ud800", "text": "ok"}', "not valid Unicode"),
    ('{"id": 2, "text": "\\u0000\\u0000"}', "text is empty"),
])
def test_embed_refuses_hostile_records(tmp_path, capsys, line, words):
    path = _jsonl(tmp_path, ['{"id": 0, "text": "fine"}', line])
    code, out = run(["embed", "--model", F16, "--input", path])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:2" in err and words in err and "Traceback" not in err, err
    assert out == ""


def test_json_output_never_holds_nan():
    out = io.StringIO()
    with pytest.raises(errors.LodevecError, match="invalid JSON"):
        _print_json({"embedding": [float("nan")]}, out)
    assert out.getvalue() == ""


def test_serve_on_another_models_database_names_the_models(tmp_path, capsys):
    path = _jsonl(tmp_path, ['{"id": "a", "text": "hello"}'])
    assert _index(tmp_path, path, capsys)[0] == 0
    minilm = str(NOMIC.parent / "minilm" / "all-MiniLM-L6-v2.f16.gguf")
    code, _ = run(["serve", "--db", str(tmp_path / "db"), "--model", minilm,
                   "--addr", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code != 0 and "was created with model tiny-nomic" in err and "dimension" not in err, err
