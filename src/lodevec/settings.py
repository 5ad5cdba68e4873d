"""Every default and every environment variable lodevec reads, in one place.

Values are read when asked for (a function call), never at import, so a process can
set ``os.environ`` before it builds an ``Encoder`` and tests can change them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the collection a database opens when none is named
DEFAULT_COLLECTION = "default"
#: embeddings the in-memory LRU keeps (about 150 MB at 768 floats)
DEFAULT_CACHE_ENTRIES = 50_000
#: memory the resident tier may hold per process (about 500k vectors of 768 floats)
DEFAULT_RESIDENT_BUDGET = 2 << 30
#: where ``lodevec serve`` listens
DEFAULT_ADDR = "127.0.0.1:8080"
#: the compute backend
DEFAULT_DEVICE = "cpu"
#: matmul arithmetic choices (see ``kernels.set_matmul_mode``)
MATMUL_MODES = ("auto", "f32")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def num_threads() -> int | None:
    """``LODEVEC_NUM_THREADS`` as a positive int, or None (unset or invalid: OpenMP decides)."""
    try:
        n = int(_env("LODEVEC_NUM_THREADS"))
    except ValueError:
        return None
    return n if n >= 1 else None


def matmul_mode() -> str:
    """``LODEVEC_MATMUL`` (``auto`` unless it names another mode)."""
    mode = _env("LODEVEC_MATMUL").lower()
    return mode if mode in MATMUL_MODES else "auto"


def isa() -> str | None:
    """``LODEVEC_ISA``: the kernel ISA level to force (lower-cased), or None to take the best."""
    return _env("LODEVEC_ISA").lower() or None


def cpu_hide() -> frozenset[str]:
    """``LODEVEC_CPU_HIDE`` (tests only): CPU feature names to treat as absent, e.g. ``avx512f``."""
    return frozenset(s.strip().lower() for s in _env("LODEVEC_CPU_HIDE").split(",") if s.strip())


def cache_dir() -> Path:
    """lodevec's model cache: ``$LODEVEC_CACHE``, else ``$XDG_CACHE_HOME/lodevec``, else
    ``~/.cache/lodevec``."""
    env = os.environ.get("LODEVEC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec requires an absolute path
        return Path(xdg) / "lodevec"
    return Path.home() / ".cache" / "lodevec"


def manifest_override() -> str | None:
    """``LODEVEC_MANIFEST``: a manifest file used instead of the packaged one."""
    return os.environ.get("LODEVEC_MANIFEST") or None


def default_model() -> str | None:
    """``LODEVEC_MODEL``: the model file used when none is given."""
    return os.environ.get("LODEVEC_MODEL") or None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set to a true value."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_endpoint(default: str) -> str:
    """``HF_ENDPOINT`` without a trailing slash, else ``default`` (huggingface_hub reads it
    once, at its import; lodevec reads it per call and passes it explicitly)."""
    return _env("HF_ENDPOINT").rstrip("/") or default


def hf_cache() -> str | None:
    """huggingface_hub's own cache (it may already hold a file): ``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else None (its default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def api_key() -> str | None:
    """``LODEVEC_API_KEY``: the server's full-access key when no ``--api-key`` /
    ``--api-key-file`` is given."""
    return _env("LODEVEC_API_KEY") or None


def read_api_key() -> str | None:
    """``LODEVEC_READ_API_KEY``: the server's read-only key when no ``--read-api-key`` /
    ``--read-api-key-file`` is given."""
    return _env("LODEVEC_READ_API_KEY") or None
