"""Folders and records into a collection, incrementally."""

from __future__ import annotations

from .indexer import Indexer, IndexSummary, chunk_text, walk_files

__all__ = ["Indexer", "IndexSummary", "chunk_text", "walk_files"]
