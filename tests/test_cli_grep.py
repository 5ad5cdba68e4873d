"""The command line as grep and git users expect it, through real ``lodevec`` processes
on a folder indexed with the real all-MiniLM-L6-v2: line numbers that match the files
(CRLF, no final newline, Latin-1), grep-shaped output and colour, exit codes, pipes,
the project database found from a subfolder and surviving a move, ls / rm / delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, MINILM_FILE, child_env

LEGACY = FIXTURES / "legacy-0.1.0"
MODEL = str(MINILM_FILE)


def lv(args, cwd, stdin=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    e = child_env()
    e.pop("LODEVEC_DB", None)
    e.pop("NO_COLOR", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "lodevec", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, env=e, timeout=timeout)


def _write_project(root):
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "bread.md").write_text(
        "# Bread\n\nMix flour, water, salt and yeast.\nKnead the dough for ten minutes.\n"
        "Bake the loaf in a hot oven until the crust is brown.\n", encoding="utf-8")
    (root / "windows.txt").write_bytes(
        b"Line one of a Windows file.\r\nThe garden needs water every morning.\r\n"
        b"Tomatoes ripen in the late summer sun.\r\n")
    (root / "no_newline.txt").write_text("first line here\nthe cat sleeps on the warm sofa",
                                         encoding="utf-8")
    long = "".join(f"step {i}: tighten bolt number {i} of the bicycle wheel\n" for i in range(1, 41))
    (root / "long.md").write_text(long, encoding="utf-8")
    (root / "latin1.txt").write_bytes("Le café crème est très chaud; le thé aussi.\n".encode("latin-1"))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.md").write_text("bicycle wheel secret notes\n", encoding="utf-8")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary" * 50)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "proj"
    _write_project(root)
    r = lv(["index", "--model", MODEL, "--chunk-tokens", "32", "--overlap", "8", "."], root)
    assert r.returncode == 0, r.stderr
    assert (root / ".lodevec").is_dir()
    assert "1 binary" in r.stdout and "blob.bin: binary file" in r.stdout
    return root


def _hits(project, query, *extra, cwd=None):
    r = lv(["search", "--json", "-n", "60", *extra, query], cwd or project)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_line_numbers_and_bytes_match_the_files(project):
    hits = _hits(project, "bicycle wheel bolt garden bread")
    assert {h["path"] for h in hits} >= {"long.md", "windows.txt", "no_newline.txt", "latin1.txt",
                                         "docs/bread.md"}
    assert len({h["path"] for h in hits if h["path"] == "long.md" for _ in [0]}) == 1
    assert sum(h["path"] == "long.md" for h in hits) > 2  # several chunks, each with its lines
    for h in hits:
        data = (project / h["path"]).read_bytes()
        enc = h["metadata"].get("encoding", "utf-8")
        m = h["metadata"]
        assert data[m["byte_start"]:m["byte_end"]].decode(enc) == h["text"], h
        lines = data.decode(enc).split("\n")
        chunk = h["text"].split("\n")
        assert h["line_end"] - h["line_start"] + 1 == len(chunk)
        assert lines[h["line_start"] - 1].endswith(chunk[0])
        assert lines[h["line_end"] - 1].startswith(chunk[-1])
    crlf = next(h for h in hits if h["path"] == "windows.txt")
    assert crlf["line_start"] == 1 and crlf["line_end"] == 3
    last = next(h for h in hits if h["path"] == "no_newline.txt")
    assert last["line_end"] == 2 and last["text"].endswith("warm sofa")
    assert not any(".hidden" in h["path"] for h in hits)


def test_grep_shaped_lines_show_the_file_line(project):
    r = lv(["search", "-n", "20", "--scores", "tomatoes ripen in the summer sun"], project)
    assert r.returncode == 0 and r.stderr == ""
    first = r.stdout.splitlines()[0]
    assert first.startswith("windows.txt:3: Tomatoes ripen in the late summer sun.")
    for line in r.stdout.splitlines():
        path, lineno, rest = line.split(":", 2)
        text = rest[1:].rsplit("  ", 1)[0]
        file_line = (project / path).read_bytes().decode(
            "latin-1" if path == "latin1.txt" else "utf-8").split("\n")[int(lineno) - 1]
        assert file_line.rstrip("\r").strip() == text.strip()
    r = lv(["search", "-l", "bicycle wheel"], project)
    assert r.stdout.splitlines()[0] == "long.md" and len(set(r.stdout.splitlines())) == len(r.stdout.splitlines())
    r = lv(["search", "-C", "1", "-n", "1", "--max-count", "1", "tighten bolt number 20"], project)
    out = r.stdout.splitlines()
    n = int(out[1].split(":")[1])
    assert out[0] == f"long.md-{n - 1}- step {n - 1}: tighten bolt number {n - 1} of the bicycle wheel"
    assert out[2].startswith(f"long.md-{n + 1}- ")


def test_discovery_from_a_subfolder_and_stdin_query(project):
    r = lv(["search", "-n", "1", "-"], project / "docs", stdin="how do I knead dough\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("bread.md:4: Knead the dough")
    r = lv(["ls"], project / "docs")
    listed = {line.split()[-1] for line in r.stdout.splitlines()}
    assert "bread.md" in listed and "../latin1.txt" in listed
    assert not any("secret" in s for s in listed)


def test_exit_codes_and_bad_filter(project):
    r = lv(["search", "--where", "source = 'nothing.md'", "bread"], project)
    assert (r.returncode, r.stdout) == (1, "")
    r = lv(["search", "--where", "metadata.path = 'x'", "bread"], project)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "metadata.path = 'x'" in r.stderr and "Columns you can filter on: id, text, source" in r.stderr
    assert ".rs:" not in r.stderr and "cargo" not in r.stderr
    r = lv(["search", "--db", str(project / "nope"), "bread"], project)
    assert r.returncode == 2


def test_closed_stdout_is_quiet(project):
    e = child_env()
    for args, stdin in ((["search", "bread"], None), (["search", "--json", "bread"], None),
                        (["embed", "--model", MODEL],
                         "".join(json.dumps({"id": i, "text": f"text {i}"}) + "\n" for i in range(300)))):
        p = subprocess.Popen([sys.executable, "-m", "lodevec", *args], cwd=project, env=e,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # the reader is gone before anything is written (| head -0)
        _, err = p.communicate(stdin.encode() if stdin else b"", timeout=300)
        assert (p.returncode, err.decode()) == (0, ""), args
    r = subprocess.run(f"{sys.executable} -m lodevec search bread | head -1", shell=True, cwd=project,
                       env=e, capture_output=True, text=True, timeout=300,
                       executable="/bin/bash")
    assert r.stderr == "" and r.stdout.count("\n") == 1


def test_colour(project):
    import pty

    r = lv(["search", "-n", "1", "--color", "always", "bread"], project)
    assert "\x1b[35m" in r.stdout and "\x1b[32m" in r.stdout
    assert "\x1b[" not in lv(["search", "-n", "1", "bread"], project).stdout  # piped: none
    for no_color, expect in (("1", False), (None, True)):
        master, slave = pty.openpty()
        e = child_env()
        e.pop("NO_COLOR", None)
        if no_color:
            e["NO_COLOR"] = no_color
        p = subprocess.Popen([sys.executable, "-m", "lodevec", "search", "-n", "1", "bread"],
                             cwd=project, env=e, stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
        p.wait(timeout=300)
        os.close(master)
        assert ("\x1b[" in b"".join(chunks).decode()) is expect


def test_moved_project_rm_and_delete(project, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(project, moved)
    before = lv(["ls", "--json"], moved).stdout.splitlines()
    r = lv(["index", "--json", "--chunk-tokens", "32", "--overlap", "8", "."], moved)  # recorded model
    s = json.loads(r.stdout)
    assert s["chunks_embedded"] == 0 and s["chunks_removed"] == 0, s
    after = lv(["ls", "--json"], moved).stdout.splitlines()
    assert before == after
    counts = {json.loads(x)["source"]: json.loads(x)["chunks"] for x in after}
    hits = [json.loads(x) for x in lv(["search", "--json", "-n", "60", "bread"], moved).stdout.splitlines()]
    assert len({h["id"] for h in hits}) == len(hits) == sum(counts.values())  # no duplicates
    assert all(not h["source"].startswith("/") for h in hits)

    r = lv(["rm", "docs"], moved)
    assert r.returncode == 0 and f"removed {counts['docs/bread.md']} chunks of 1 files" in r.stdout
    r = lv(["rm", "docs/bread.md"], moved)
    assert r.returncode == 1 and "not indexed" in r.stderr
    r = lv(["delete", "--where", "source LIKE '%.txt'"], moved)
    assert r.returncode == 0
    assert json.loads(r.stdout)["deleted"] == sum(n for src, n in counts.items() if src.endswith(".txt"))
    listed = {json.loads(x)["source"] for x in lv(["ls", "--json"], moved).stdout.splitlines()}
    assert listed == {"long.md"}
    (moved / "long.md").unlink()
    r = lv(["index", "--chunk-tokens", "32", "--overlap", "8", "."], moved)
    assert "pruned 1 vanished" in r.stdout and "long.md" in r.stdout


def test_legacy_table_searches_without_line_numbers(tmp_path):
    db = shutil.copytree(LEGACY / "db", tmp_path / "db")
    r = lv(["search", "--db", str(db), "--model", MODEL, "programming languages"], tmp_path)
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "/tmp/legacy/notes/doc3.txt: Rust programming language is fast and safe"
    assert any(line.startswith("records.jsonl#r2: ") for line in r.stdout.splitlines())
    assert r.stderr.count("before lodevec stored line numbers") == 1 and "re-index" in r.stderr


def test_progress_lines_and_optimize(tmp_path):
    import fcntl

    root = tmp_path / "p"
    _write_project(root)
    r = lv(["index", "--model", MODEL, "--progress", "."], root)
    assert r.returncode == 0
    assert "lodevec index: reading files: 6/6" in r.stderr
    assert "lodevec index: 6 files read: 6 chunks to embed" in r.stderr
    assert lv(["index", "--quiet", "."], root).stderr == ""
    (root / "docs" / "bread.md").write_text("Rye bread needs a sourdough starter.\n")
    lv(["index", "-q", "."], root)

    lock = root / ".lodevec" / ".lodevec-locks" / "default.lock"
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is writing: history is kept
    try:
        p = subprocess.Popen([sys.executable, "-m", "lodevec", "optimize", "--json"], cwd=root,
                             env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until_blocked_on_a_lock(p.pid)  # it has decided (lock busy) and waits for it
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, err = p.communicate(timeout=300)
    busy = json.loads(out)
    assert busy["kept_versions_seconds"] == 300 and busy["versions_after"] > 1, err

    r = lv(["optimize"], root)
    assert r.returncode == 0 and "pruned to the latest version" in r.stdout
    assert " -> 1 versions" in r.stdout and "KiB" in r.stdout
    r = lv(["optimize", "--keep-versions", "1h", "--json"], root)
    assert json.loads(r.stdout)["kept_versions_seconds"] == 3600
    assert lv(["optimize", "--keep-versions", "soon"], root).returncode == 2


def _wait_until_blocked_on_a_lock(pid: int, timeout: float = 240) -> None:
    """Until /proc/locks lists ``pid`` waiting for a flock (a line with ``->``)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            if any("->" in line and f" {pid} " in line for line in f):
                return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} never waited for the write lock")


def test_help_imports_nothing_heavy():
    code = """
import sys
from lodevec.cli import main
for argv in (["--help"], ["search", "--help"], ["index", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print(sorted(m for m in ("numpy", "lancedb", "pyarrow", "starlette", "tqdm", "tokenizers")
             if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "--files-with-matches" in r.stdout and "--glob" in r.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    import fcntl
    import pty
    import struct
    import termios
    import threading

    root = tmp_path / "p"
    _write_project(root)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "lodevec", "index", "--model", MODEL,
                          "--batch-size", "1", "."], cwd=root, env=child_env(),
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                return
            if not b:
                return
            chunks.append(b)

    reader = threading.Thread(target=read)
    reader.start()
    out = p.communicate(timeout=300)[0].decode()
    reader.join(10)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert p.returncode == 0 and out.startswith("indexed 6 files")
    assert "reading:" in shown and "/6 [" in shown  # the files, with their total
    assert "embedding:" in shown and "tok/s" in shown and "<" in shown  # total, rate, ETA
