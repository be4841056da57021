"""Vector stores: where chunk vectors are indexed. ``base.py`` is the contract, one module
per store; README.md has the add-a-store checklist."""

from __future__ import annotations

from knowledge.vectorstores.base import (
    HEADING_SEPARATOR,
    VectorHit,
    VectorStore,
    VectorStoreError,
    collection_name,
)
from knowledge.vectorstores.chroma import ChromaStore

__all__ = [
    "HEADING_SEPARATOR",
    "ChromaStore",
    "VectorHit",
    "VectorStore",
    "VectorStoreError",
    "collection_name",
]
