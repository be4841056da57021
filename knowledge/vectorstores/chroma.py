"""ChromaDB through ``HttpClient`` to a Chroma server (DESIGN §4, §6).

Why a server and never ``PersistentClient``: a persistent client in the web process never
sees vectors that a worker process added. Why no embedding function: Chroma's default one
downloads a model at run time, which fails offline; we always pass vectors.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx

from knowledge.vectorstores.base import (
    HEADING_SEPARATOR,
    VectorHit,
    VectorStoreError,
    collection_name,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import GetResult, QueryResult
    from chromadb.base_types import Metadata, PyVector, Where

# collection_name is re-exported: callers name the collection where they hold the store.
__all__ = ["ChromaStore", "collection_name"]

T = TypeVar("T")

# Used when the server does not say (get_max_batch_size); Chroma 1.5's own default is 5461.
FALLBACK_MAX_BATCH = 1000
# Page size when listing every id of a collection (drift checks).
ID_PAGE = 10_000


def _metadata_value(key: str, value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata {key!r} is {value}, which Chroma cannot store")
        return value
    if isinstance(value, list | tuple):
        return HEADING_SEPARATOR.join(str(item) for item in value)
    raise ValueError(
        f"metadata {key!r} is a {type(value).__name__}; Chroma takes str, int, float or bool"
    )


def _clean_metadata(metadata: Mapping[str, Any]) -> dict[str, str | int | float | bool] | None:
    """Chroma's rules: scalar values only, no None, and no empty dict (None instead)."""
    cleaned: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        stored = _metadata_value(key, value)
        if stored is not None:
            cleaned[str(key)] = stored
    return cleaned or None


def _chroma_where(where: Mapping[str, Any] | None) -> Where | None:
    """Our filter shape (see ``VectorStore``) in Chroma's: one operator per level, so
    several keys become ``$and`` and a list becomes ``$in``."""
    if not where:
        return None
    clauses: list[dict[str, Any]] = []
    for key, value in where.items():
        if key.startswith("$") or isinstance(value, Mapping):
            clauses.append({key: value})
        elif isinstance(value, list | tuple | set | frozenset):
            clauses.append({key: {"$in": list(value)}})
        else:
            clauses.append({key: value})
    return cast("Where", clauses[0] if len(clauses) == 1 else {"$and": clauses})


def _score(distance: float) -> float:
    # Cosine space: distance = 1 - cosine similarity, in 0..2. Opposite vectors (below 0)
    # are as useless as orthogonal ones, and float error can overshoot 1 slightly.
    return min(1.0, max(0.0, 1.0 - float(distance)))


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, start + size)


def _upsert(
    collection: Collection, *, ids: list[str], embeddings: list[PyVector], metadatas: list[Metadata]
) -> None:
    collection.upsert(ids=ids, embeddings=embeddings, metadatas=metadatas)


def _delete(collection: Collection, *, ids: list[str]) -> None:
    collection.delete(ids=ids)


def _update(collection: Collection, *, ids: list[str], metadata: Metadata) -> None:
    # update() merges these keys into each record's metadata and ignores unknown ids.
    collection.update(ids=ids, metadatas=[metadata] * len(ids))


def _query(
    collection: Collection, *, vector: PyVector, top_k: int, where: Where | None
) -> QueryResult:
    return collection.query(
        query_embeddings=[vector],
        n_results=top_k,
        where=where,
        include=["metadatas", "distances"],
    )


def _count(collection: Collection) -> int:
    return collection.count()


def _id_page(collection: Collection, *, offset: int) -> GetResult:
    return collection.get(limit=ID_PAGE, offset=offset, include=[])


def _http_sessions(client: ClientAPI) -> list[httpx.Client]:
    """The httpx sessions inside Chroma's HttpClient: its own and its admin client's
    (private attributes: none found if a later Chroma moves them)."""
    sessions = []
    for owner in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(owner, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            sessions.append(session)
    return sessions


_STORES: weakref.WeakSet[ChromaStore] = weakref.WeakSet()


def _reset_stores_after_fork() -> None:
    for store in list(_STORES):
        store._after_fork()


class ChromaStore:
    """``VectorStore`` on a Chroma server at ``url`` (``http://host:8000``, ``https://...``).

    The ``HttpClient`` is created on first use in each process (a client made before a fork
    hangs in the child) and again after a fork. Collections use the cosine space and no
    embedding function. Writes go in batches of the server's maximum batch size.
    """

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 60.0
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a Chroma server URL: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._ssl = parts.scheme == "https"
        self._port = parts.port or (443 if self._ssl else 8000)
        self._headers = dict(headers or {})
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pid = 0
        self._client: ClientAPI | None = None
        self._max_batch = FALLBACK_MAX_BATCH
        self._collections: dict[str, Collection] = {}
        _STORES.add(self)

    def __repr__(self) -> str:
        return f"ChromaStore({self.url!r})"

    # -- the contract -------------------------------------------------------------------

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        if not len(ids) == len(vectors) == len(metadatas):
            raise ValueError(
                f"upsert needs as many vectors and metadatas as ids: {len(ids)} ids, "
                f"{len(vectors)} vectors, {len(metadatas)} metadatas"
            )
        if not ids:
            return
        ids_list = [str(chunk_id) for chunk_id in ids]
        embeddings: list[PyVector] = [[float(x) for x in vector] for vector in vectors]
        # Chroma takes None for a record without metadata (its type hints do not say so).
        cleaned = cast("list[Metadata]", [_clean_metadata(metadata) for metadata in metadatas])
        for part in _batches(len(ids_list), self._batch_size()):
            self._on_collection(
                collection,
                functools.partial(
                    _upsert,
                    ids=ids_list[part],
                    embeddings=embeddings[part],
                    metadatas=cleaned[part],
                ),
                create=True,
            )

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        ids_list = [str(chunk_id) for chunk_id in ids]
        for part in _batches(len(ids_list), self._batch_size()):
            self._on_collection(collection, functools.partial(_delete, ids=ids_list[part]))

    def set_metadata(
        self, collection: str, ids: Sequence[str], metadata: Mapping[str, Any]
    ) -> None:
        cleaned = _clean_metadata(metadata)
        if cleaned is None:
            return  # nothing to set; Chroma's update cannot remove keys
        ids_list = [str(chunk_id) for chunk_id in ids]
        for part in _batches(len(ids_list), self._batch_size()):
            self._on_collection(
                collection, functools.partial(_update, ids=ids_list[part], metadata=cleaned)
            )

    def query(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[VectorHit]:
        if top_k < 1:
            return []
        embedding: PyVector = [float(x) for x in vector]
        result = self._on_collection(
            collection,
            functools.partial(_query, vector=embedding, top_k=top_k, where=_chroma_where(where)),
        )
        if result is None or not result["ids"]:
            return []
        ids = result["ids"][0]
        distances = (result["distances"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        return [
            VectorHit(
                chunk_id=chunk_id,
                score=_score(distances[i]),
                metadata=dict(metadatas[i] or {}) if i < len(metadatas) else {},
            )
            for i, chunk_id in enumerate(ids)
        ]

    def drop(self, collection: str) -> None:
        from chromadb.errors import NotFoundError

        client = self._ensure_client()
        with self._lock:
            self._collections.pop(collection, None)
        try:
            client.delete_collection(collection)
        except NotFoundError:
            return
        except Exception as exc:
            raise self._error(f"dropping collection {collection}", exc) from exc

    def count(self, collection: str) -> int:
        total = self._on_collection(collection, _count)
        return total or 0

    def ids(self, collection: str) -> set[str]:
        found: set[str] = set()
        offset = 0
        while True:
            page = self._on_collection(
                collection,
                functools.partial(_id_page, offset=offset),
            )
            if page is None or not page["ids"]:
                return found
            found.update(page["ids"])
            if len(page["ids"]) < ID_PAGE:
                return found
            offset += ID_PAGE

    def close(self) -> None:
        """Close this process's client and its connections (tests, shutdown). The store
        stays usable: the next call connects again."""
        with self._lock:
            client, self._client = self._client, None
            self._collections = {}
            mine = self._pid == os.getpid()
        if client is not None and mine:
            # Chroma's own close() releases its "systems" but leaves their HTTP sessions
            # open (and the admin client's system registered).
            for session in _http_sessions(client):
                session.close()
            close = getattr(client, "close", None)
            if callable(close):
                close()

    # -- clients and collections --------------------------------------------------------

    def _after_fork(self) -> None:
        # The parent's client, its sockets and possibly a held lock must not be used here.
        self._lock = threading.Lock()
        self._client = None
        self._collections = {}
        self._pid = 0

    def _ensure_client(self) -> ClientAPI:
        pid = os.getpid()
        with self._lock:
            if self._client is not None and self._pid == pid:
                return self._client
            import chromadb
            from chromadb.config import Settings

            try:
                # Telemetry off: these machines reach no outside host, and it would only
                # time out in the background.
                client = chromadb.HttpClient(
                    host=self._host,
                    port=self._port,
                    ssl=self._ssl,
                    headers=self._headers or None,
                    settings=Settings(anonymized_telemetry=False),
                )
                for session in _http_sessions(client):
                    # Chroma's HTTP sessions have no timeout at all: a stuck server would
                    # hold a worker for ever.
                    session.timeout = httpx.Timeout(self.timeout_s, connect=5.0)
                max_batch = client.get_max_batch_size()
            except Exception as exc:
                raise self._error("connecting", exc) from exc
            self._client = client
            self._max_batch = max_batch if max_batch and max_batch > 0 else FALLBACK_MAX_BATCH
            self._collections = {}
            self._pid = pid
            return client

    def _batch_size(self) -> int:
        self._ensure_client()
        return self._max_batch

    def _collection(self, name: str, *, create: bool) -> Collection | None:
        from chromadb.errors import NotFoundError

        client = self._ensure_client()
        with self._lock:
            cached = self._collections.get(name)
        if cached is not None:
            return cached
        if create:
            collection = client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                # Never Chroma's default embedding function: it downloads a model.
                embedding_function=None,
            )
        else:
            try:
                collection = client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        with self._lock:
            self._collections[name] = collection
        return collection

    def _on_collection(
        self, name: str, action: Callable[[Collection], T], *, create: bool = False
    ) -> T | None:
        """Run ``action`` on the collection; None when it does not exist (and ``create`` is
        off). A cached collection that another process dropped (and maybe made again, with
        a new id) answers NotFound: look it up again once."""
        from chromadb.errors import NotFoundError

        for attempt in range(2):
            try:
                collection = self._collection(name, create=create)
                if collection is None:
                    return None
                return action(collection)
            except NotFoundError as exc:
                with self._lock:
                    self._collections.pop(name, None)
                if attempt == 1:
                    if not create:
                        return None
                    raise self._error(f"collection {name}", exc) from exc
            except VectorStoreError:
                raise
            except Exception as exc:
                raise self._error(f"collection {name}", exc) from exc
        return None  # pragma: no cover  (the loop returns or raises)

    def _error(self, doing: str, exc: Exception) -> VectorStoreError:
        return VectorStoreError(f"Chroma at {self.url}, {doing}: {type(exc).__name__}: {exc}")


os.register_at_fork(after_in_child=_reset_stores_after_fork)
