"""What starting lodevec imports: ``import lodevec`` and the CLI's parser stay light,
and ``stats`` / ``search`` on a local database never import LanceDB.  (Times are
measured by ``lodevec bench startup``, never asserted.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import MINILM_FILE, child_env, unit_vectors

HEAVY = ["lancedb", "lance", "numpy", "pyarrow", "starlette", "uvicorn", "gguf", "tokenizers",
         "lance_namespace", "pydantic", "lodevec.kernels", "lodevec.serve.app"]


def imported_after(code: str) -> set[str]:
    """Top-level (and lodevec) modules loaded by a fresh interpreter running ``code``."""
    script = (f"import sys\n{code}\nimport json\n"
              "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True,
                         text=True, check=True, timeout=300)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_lodevec_is_light():
    mods = imported_after("import lodevec")
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_cli_parser_and_help_are_light():
    mods = imported_after("from lodevec.cli import main\nassert main(['--help']) == 0\n"
                          "assert main(['search', '--help']) == 0")
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_stats_and_search_never_import_lancedb(tmp_path):
    from lodevec.embedding import Embedder
    from lodevec.store import Database

    emb = Embedder.from_gguf(MINILM_FILE)
    coll = Database(tmp_path / "db").create_or_open("default", identity=emb.identity())
    texts = ["Rust is a systems language", "Paris is in France", "logs rotate nightly"]
    coll.upsert([{"id": f"n{i}", "text": t, "source": "notes.md", "chunk": i}
                 for i, t in enumerate(texts)], embeddings=emb.embed(texts, task="search_document"))
    coll.upsert([{"id": f"r{i}", "text": f"filler {i}", "source": "filler.md", "chunk": i}
                 for i in range(40)], embeddings=unit_vectors(np.random.default_rng(0), 40, emb.dim))
    db = str(tmp_path / "db")
    run = "from lodevec.cli import main\nassert main({argv!r}) == 0"
    stats = imported_after(run.format(argv=["stats", "--db", db, "--json"]))
    assert "lancedb" not in stats and "lance" in stats
    # stats loads no model at all
    assert not {"tokenizers", "lodevec.kernels", "lodevec.embedding"} & stats
    search = imported_after(run.format(argv=["search", "--db", db, "--json", "which language?"]))
    assert "lancedb" not in search and "lance_namespace" not in search
    assert not {"starlette", "uvicorn", "lodevec.serve.app"} & search
