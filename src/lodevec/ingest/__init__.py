"""Folders and records into a collection, incrementally."""

from __future__ import annotations

from ..text.chunking import chunk_text
from .indexer import Indexer, IndexSummary
from .walk import read_text, walk_files

__all__ = ["Indexer", "IndexSummary", "chunk_text", "read_text", "walk_files"]
