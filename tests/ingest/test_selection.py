"""Which files a walk selects: hidden ones skipped unless asked, --glob / --type as rg,
.gitignore, .ignore and .lodevecignore honoured; text in other encodings decoded."""

from __future__ import annotations

import pytest

from lodevec import errors
from lodevec.ingest.walk import Selection, read_file, walk_files


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "t"
    for rel in ["a.py", "b.md", "c.txt", "src/d.py", "src/e.md", "build/f.py", ".hidden/g.md",
                ".dotfile.md", "notes/h.md", "notes/skip.md", "vendor/i.py"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {rel}\n")
    (root / ".ignore").write_text("vendor/\n")
    (root / "notes" / ".lodevecignore").write_text("skip.md\n")
    return root


def names(root, **kw):
    return sorted(p.relative_to(root).as_posix() for p in walk_files([root], select=Selection(**kw)))


def test_default_skips_hidden_and_honours_ignore_files(tree):
    assert names(tree) == ["a.py", "b.md", "build/f.py", "c.txt", "notes/h.md", "src/d.py", "src/e.md"]
    assert ".hidden/g.md" in names(tree, hidden=True) and ".dotfile.md" in names(tree, hidden=True)
    assert "vendor/i.py" in names(tree, ignore_files=False)


def test_globs_and_types(tree):
    assert names(tree, types=["py"]) == ["a.py", "build/f.py", "src/d.py"]
    assert names(tree, types=["py"], globs=["!build/"]) == ["a.py", "src/d.py"]
    assert names(tree, globs=["src/**"]) == ["src/d.py", "src/e.md"]
    assert names(tree, globs=["*.md", "!notes/"]) == ["b.md", "src/e.md"]
    with pytest.raises(errors.InputError, match="unknown --type 'cobol'"):
        Selection(types=["cobol"])
    with pytest.raises(errors.InputError, match="empty"):
        Selection(globs=["!"])


def test_a_file_named_directly_is_always_read(tree):
    assert [p.name for p in walk_files([tree / ".hidden" / "g.md"])] == ["g.md"]


def test_encodings(tmp_path):
    (tmp_path / "l1.txt").write_bytes("Le café crème est très chaud.\n".encode("latin-1"))
    (tmp_path / "sjis.txt").write_bytes("これは日本語のテキストです。東京は大きい都市です。".encode("shift_jis"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfhello\n")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01" * 100)
    assert read_file(tmp_path / "l1.txt") == ("Le café crème est très chaud.\n", None, "cp1252")
    text, _, enc = read_file(tmp_path / "sjis.txt")
    assert text.startswith("これは日本語") and enc in ("cp932", "shift_jis")
    assert read_file(tmp_path / "bom.txt") == ("hello\n", None, "utf-8-sig")
    assert read_file(tmp_path / "bin.dat") == (None, "binary file", None)
