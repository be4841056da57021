"""Writes for knowledge bases and documents, and the ingestion pipeline the `ingest` worker
runs: parse -> split -> embed -> index, with each step's status pushed to watchers."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from asgiref.sync import async_to_sync
from celery.exceptions import SoftTimeLimitExceeded
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from assistant_site.metrics import INGESTION_DOCUMENTS
from assistant_site.sharing import owner_permissions_grant
from audit.services import audit_record
from knowledge.embedders import Embedder, EndpointEmbedder, default_embedder
from knowledge.exceptions import KnowledgeError
from knowledge.ingestion.parsing import Limits, ParseError, parse_document
from knowledge.ingestion.splitting import split_sections
from knowledge.models import Chunk, Document, EmbeddingCache, KnowledgeBase
from knowledge.search import tokenize
from knowledge.vectorstores.base import VectorStore, collection_name
from knowledge.vectorstores.chroma import ChromaStore

logger = logging.getLogger(__name__)

EMBED_BATCH = 32


def documents_group(knowledge_base_id: int) -> str:
    """The channel-layer group that hears every status change of a base's documents."""
    return f"knowledge.{knowledge_base_id}"


# --- knowledge bases -------------------------------------------------------------------------


def knowledge_base_create(*, actor: Any, data: dict[str, Any]) -> KnowledgeBase:
    with transaction.atomic():
        base = KnowledgeBase.objects.create(created_by=actor, **data)
        owner_permissions_grant(user=actor, obj=base)
    return base


def knowledge_base_update(*, base: KnowledgeBase, data: dict[str, Any]) -> KnowledgeBase:
    with transaction.atomic():
        for field, value in data.items():
            setattr(base, field, value)
        base.full_clean()
        base.save()
    return base


def knowledge_base_delete(*, base: KnowledgeBase) -> None:
    documents = list(base.documents.all())
    # Named before the row goes: delete() clears the primary key.
    collection = collection_name(base.pk, embedder_for(base).key)
    with transaction.atomic():
        base.delete()
    for document in documents:
        document.file.delete(save=False)
    if settings.CHROMA_URL:
        try:
            vector_store().drop(collection)
        except Exception:  # the rows are gone; a stale collection is harmless and reported
            logger.warning("could not drop the index of knowledge base %s", base.pk, exc_info=True)


# --- components, per process -----------------------------------------------------------------

_store: VectorStore | None = None


def vector_store() -> VectorStore:
    if not settings.CHROMA_URL:
        raise KnowledgeError("the knowledge index is unavailable: CHROMA_URL is not set")
    global _store  # noqa: PLW0603  (one client per process, made on first use: not before a fork)
    if _store is None:
        _store = ChromaStore(settings.CHROMA_URL)
    return _store


def embedder_for(base: KnowledgeBase) -> Embedder:
    endpoint = base.embedding_endpoint
    if endpoint is None:
        return default_embedder()
    from workflows.services import endpoint_config

    return EndpointEmbedder(endpoint_config(endpoint))


# --- documents -------------------------------------------------------------------------------


def _limits() -> Limits:
    return Limits(
        max_bytes=settings.KNOWLEDGE_MAX_UPLOAD_MB * 1024 * 1024,
        max_pages=settings.KNOWLEDGE_MAX_PAGES,
    )


def document_upload(
    *, base: KnowledgeBase, upload: UploadedFile[Any] | File[Any], actor: Any, queue: bool = True
) -> Document:
    """Store the file and queue its ingestion (on the `ingest` worker, after commit), unless
    ``queue`` is false (``manage.py ingest`` ingests in its own process)."""
    limit = settings.KNOWLEDGE_MAX_UPLOAD_MB * 1024 * 1024
    size = upload.size or 0
    if size > limit:
        raise KnowledgeError(
            f"{upload.name}: file larger than {settings.KNOWLEDGE_MAX_UPLOAD_MB} MB"
        )
    if size == 0:
        raise KnowledgeError(f"{upload.name}: the file is empty")
    digest = hashlib.sha256()
    for piece in upload.chunks():
        digest.update(piece)
    name = (upload.name or "document").replace("\\", "/").rsplit("/", 1)[-1][:255]
    with transaction.atomic():
        document = Document(
            knowledge_base=base,
            filename=name,
            title=name.rsplit(".", 1)[0][:300],
            size=size,
            sha256=digest.hexdigest(),
            created_by=actor,
        )
        document.file.save(name, upload, save=False)
        document.save()
        audit_record(
            action="document.upload",
            target=base,
            actor=actor,
            extra={"document": str(document.pk), "file": name, "size": size},
        )
        if queue:
            transaction.on_commit(lambda: _enqueue_ingest(document.pk))
    return document


def _enqueue_ingest(document_id: Any) -> None:
    from knowledge.tasks import document_ingest_task

    document_ingest_task.delay(str(document_id))


def document_retry(*, document: Document, actor: Any) -> Document:
    with transaction.atomic():
        Document.objects.filter(pk=document.pk).update(status=Document.Status.QUEUED, error="")
        audit_record(
            action="document.retry",
            target=document.knowledge_base,
            actor=actor,
            extra={"document": str(document.pk)},
        )
        transaction.on_commit(lambda: _enqueue_ingest(document.pk))
    document.refresh_from_db()
    return document


def document_set_enabled(*, document: Document, enabled: bool, actor: Any) -> Document:
    """Enable or disable at once: the index's metadata changes with the row."""
    with transaction.atomic():
        document.enabled = enabled
        document.save(update_fields=["enabled", "updated_at"])
        audit_record(
            action="document.enable" if enabled else "document.disable",
            target=document.knowledge_base,
            actor=actor,
            extra={"document": str(document.pk), "title": document.title},
        )
        ids = [str(pk) for pk in document.chunks.values_list("pk", flat=True)]
        if ids:
            base = document.knowledge_base
            vector_store().set_metadata(
                collection_name(base.pk, embedder_for(base).key), ids, {"enabled": enabled}
            )
    _notify(document)
    return document


def document_delete(*, document: Document, actor: Any) -> None:
    base = document.knowledge_base
    ids = [str(pk) for pk in document.chunks.values_list("pk", flat=True)]
    with transaction.atomic():
        audit_record(
            action="document.delete",
            target=base,
            actor=actor,
            extra={"document": str(document.pk), "title": document.title},
        )
        if ids:
            vector_store().delete(collection_name(base.pk, embedder_for(base).key), ids)
        document.delete()
    document.file.delete(save=False)


# --- ingestion -------------------------------------------------------------------------------


def _notify(document: Document) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {
        "type": "document.status",
        "document": {
            "id": str(document.pk),
            "status": document.status,
            "error": document.error,
            "chunk_count": document.chunk_count,
            "enabled": document.enabled,
            "title": document.title,
        },
    }
    try:
        async_to_sync(layer.group_send)(documents_group(document.knowledge_base_id), message)
    except Exception:  # watchers are optional: a layer outage must not fail ingestion
        logger.warning("could not push the status of document %s", document.pk, exc_info=True)


def _status(document: Document, status: str, **fields: Any) -> None:
    document.status = status
    for name, value in fields.items():
        setattr(document, name, value)
    document.save(update_fields=["status", "updated_at", *fields])
    _notify(document)


def _pack(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _unpack(blob: bytes | memoryview) -> list[float]:
    return [float(x) for x in np.frombuffer(bytes(blob), dtype="<f4")]


def _embed_with_cache(embedder: Embedder, chunks: Sequence[Chunk]) -> list[list[float]]:
    """Vectors for the chunks; texts embedded before (same embedder, same hash) are not
    embedded again."""
    hashes = [chunk.sha256 for chunk in chunks]
    cached = {
        sha: _unpack(blob)
        for sha, blob in EmbeddingCache.objects.filter(
            embedder_key=embedder.key, sha256__in=set(hashes)
        ).values_list("sha256", "vector")
    }
    missing = list(dict.fromkeys(c.sha256 for c in chunks if c.sha256 not in cached))
    texts = {c.sha256: c.text for c in chunks}
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start : start + EMBED_BATCH]
        vectors = embedder.embed_documents([texts[sha] for sha in batch])
        EmbeddingCache.objects.bulk_create(
            [
                EmbeddingCache(embedder_key=embedder.key, sha256=sha, vector=_pack(vector))
                for sha, vector in zip(batch, vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        cached.update(zip(batch, (list(v) for v in vectors), strict=True))
    return [cached[sha] for sha in hashes]


def document_ingest(*, document_id: str) -> Document:
    """Parse, split, embed and index one document. An expected failure (a corrupt, encrypted
    or oversized file...) marks the document failed with a message the curator can act on;
    the worker carries on."""
    document = Document.objects.select_related("knowledge_base").get(pk=document_id)
    base = document.knowledge_base
    try:
        _status(document, Document.Status.PARSING, error="")
        with document.file.open("rb") as handle:
            data = handle.read()
        parsed = parse_document(data, document.filename, _limits())
        _status(
            document,
            Document.Status.SPLITTING,
            title=(parsed.title or document.title)[:300],
            kind=parsed.kind,
            pages=parsed.pages,
        )
        drafts = split_sections(
            parsed.sections, chunk_size=base.chunk_size, chunk_overlap=base.chunk_overlap
        )
        if not drafts:
            raise KnowledgeError("no text found in the document (a scanned PDF needs OCR first)")
        _status(document, Document.Status.EMBEDDING)
        old_ids = [str(pk) for pk in document.chunks.values_list("pk", flat=True)]
        chunks = [
            Chunk(
                document=document,
                knowledge_base=base,
                order=draft.order,
                text=draft.text,
                heading_path=" > ".join(draft.heading_path)[:1000],
                page=draft.page,
                sha256=draft.sha256,
                terms=" ".join(tokenize(" ".join([*draft.heading_path, draft.text]))),
            )
            for draft in drafts
        ]
        embedder = embedder_for(base)
        vectors = _embed_with_cache(embedder, chunks)
        store = vector_store()
        collection = collection_name(base.pk, embedder.key)
        with transaction.atomic():
            document.chunks.all().delete()
            Chunk.objects.bulk_create(chunks)
            store.upsert(
                collection,
                [str(chunk.pk) for chunk in chunks],
                vectors,
                [
                    {
                        "document_id": str(document.pk),
                        "enabled": document.enabled,
                        "order": chunk.order,
                    }
                    for chunk in chunks
                ],
            )
            if old_ids:
                store.delete(collection, old_ids)
            _status(document, Document.Status.INDEXED, chunk_count=len(chunks), error="")
    except (ParseError, KnowledgeError, ValueError) as exc:
        _status(document, Document.Status.FAILED, error=str(exc)[:2000])
    except SoftTimeLimitExceeded:
        _status(
            document,
            Document.Status.FAILED,
            error="ingestion took longer than 30 minutes: split the document into smaller files",
        )
    except Exception as exc:  # an unexpected fault fails this document, not the worker
        logger.exception("ingesting document %s failed", document.pk)
        _status(document, Document.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
    outcome = "indexed" if document.status == Document.Status.INDEXED else "failed"
    INGESTION_DOCUMENTS.labels(outcome=outcome).inc()
    return document


# --- index maintenance -----------------------------------------------------------------------


def knowledge_base_reindex(*, base: KnowledgeBase) -> int:
    """Rebuild the base's vector collection from its chunks (after an embedder change, or to
    repair drift). Vectors come from the embedding cache where it has them."""
    embedder = embedder_for(base)
    collection = collection_name(base.pk, embedder.key)
    store = vector_store()
    store.drop(collection)
    total = 0
    documents = base.documents.filter(status=Document.Status.INDEXED)
    for document in documents:
        chunks = list(document.chunks.order_by("order"))
        if not chunks:
            continue
        vectors = _embed_with_cache(embedder, chunks)
        store.upsert(
            collection,
            [str(chunk.pk) for chunk in chunks],
            vectors,
            [
                {"document_id": str(document.pk), "enabled": document.enabled, "order": c.order}
                for c in chunks
            ],
        )
        total += len(chunks)
    return total


def knowledge_base_index_drift(*, base: KnowledgeBase) -> dict[str, list[str]]:
    """Chunks of indexed documents missing from the index, and index entries with no chunk."""
    expected = {
        str(pk)
        for pk in Chunk.objects.filter(
            knowledge_base=base, document__status=Document.Status.INDEXED
        ).values_list("pk", flat=True)
    }
    stored = vector_store().ids(collection_name(base.pk, embedder_for(base).key))
    return {"missing": sorted(expected - stored), "extra": sorted(stored - expected)}
