"""The vector store contract. Plain Python, no Django.

The database (Chunk rows) is the source of truth; a vector store is an index that can be
rebuilt from it. One collection per knowledge base and embedder (``collection_name``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "HEADING_SEPARATOR",
    "VectorHit",
    "VectorStore",
    "VectorStoreError",
    "collection_name",
]

# Lists in metadata (a chunk's heading path) are stored as one string joined with this.
HEADING_SEPARATOR = " > "


class VectorStoreError(Exception):
    """The store is unreachable or refused an operation. The message names what failed."""


@dataclass(frozen=True)
class VectorHit:
    chunk_id: str
    # Cosine similarity, clamped to 0..1: higher is closer.
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Where chunk vectors live, by collection.

    - Vectors are given, never computed by the store (no store-side embedding function).
    - ``ids`` are chunk ids (strings); ``upsert`` replaces a chunk's vector and metadata.
    - Metadata values are str, int, float or bool. ``None`` values are left out and a list
      or tuple is stored as one string joined with ``HEADING_SEPARATOR`` (a heading path).
    - ``set_metadata`` merges the given keys into each existing chunk's metadata (unknown
      ids are ignored), so ``{"enabled": False}`` hides a disabled document's chunks from
      queries filtered on ``enabled`` at once.
    - ``query`` returns at most ``top_k`` hits, best first, with a cosine score in 0..1.
      ``where`` filters on metadata before ranking: ``{"key": value}`` is equality, a list,
      tuple or set value means "one of", several keys are all required, and a value that is
      a mapping of operators (``{"$gte": 3}``) or a top-level ``$and``/``$or`` is passed as
      the store's own filter language (Chroma's).
    - Operations on a collection that does not exist act on an empty one: ``query`` finds
      nothing, ``count`` is 0, ``ids`` is empty, ``delete``/``set_metadata``/``drop`` do
      nothing. ``upsert`` creates it.
    - Failures raise ``VectorStoreError``.
    """

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None: ...

    def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    def set_metadata(
        self, collection: str, ids: Sequence[str], metadata: Mapping[str, Any]
    ) -> None: ...

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[VectorHit]: ...

    def drop(self, collection: str) -> None: ...

    def count(self, collection: str) -> int: ...

    def ids(self, collection: str) -> set[str]: ...


_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
_SLUG_MAX = 40


def collection_name(knowledge_base_id: int, embedder_key: str) -> str:
    """``kb-<id>-<slug of the key>-<8 hex of its sha256>``: a valid Chroma name (3-512
    characters of [a-zA-Z0-9._-], alphanumeric at both ends) for any key. The hash keeps
    keys apart that slug alike ("a/b" and "a-b") or that are cut at 40 characters."""
    if knowledge_base_id < 0:
        raise ValueError("knowledge_base_id must not be negative")
    slug = _UNSAFE.sub("-", embedder_key).strip("-").lower()[:_SLUG_MAX].strip("-")
    digest = hashlib.sha256(embedder_key.encode("utf-8")).hexdigest()[:8]
    parts = (
        [f"kb-{knowledge_base_id}", slug, digest] if slug else [f"kb-{knowledge_base_id}", digest]
    )
    return "-".join(parts)
