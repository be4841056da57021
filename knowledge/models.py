"""Knowledge bases, their documents and chunks. The database is the source of truth: the vector
index (Chroma) holds only vectors and filter metadata and can be rebuilt from the chunks."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from assistant_site.models import OwnedModel
from assistant_site.permissions import register_guarded


@register_guarded
class KnowledgeBase(OwnedModel):
    """A collection of documents that retrieval nodes search."""

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    # None: the local model that ships with the product (works offline). Otherwise an
    # embedding endpoint of the LLM gateway (vLLM serving an embedding model).
    embedding_endpoint = models.ForeignKey(
        "workflows.ModelEndpoint",
        verbose_name=_("embedding endpoint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        limit_choices_to={"kind": "embedding"},
        related_name="+",
        help_text=_("Empty: the built-in multilingual model. Changing it needs a reindex."),
    )
    chunk_size = models.PositiveIntegerField(
        _("chunk size (characters)"),
        default=500,
        validators=[MinValueValidator(100), MaxValueValidator(4000)],
    )
    chunk_overlap = models.PositiveIntegerField(
        _("chunk overlap (characters)"),
        default=50,
        validators=[MaxValueValidator(1999)],
        help_text=_("Less than half the chunk size."),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("knowledge base")
        verbose_name_plural = _("knowledge bases")
        permissions = [("manage_documents_knowledgebase", _("Can manage documents"))]

    def __str__(self) -> str:
        return self.name


def document_upload_path(document: Document, filename: str) -> str:
    # The stored name is ours (the original name is kept in `filename`): no path tricks,
    # no clashes between uploads of the same name.
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"knowledge/{document.knowledge_base_id}/{document.pk}.{suffix[:10]}"


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        PARSING = "parsing", _("Parsing")
        SPLITTING = "splitting", _("Splitting")
        EMBEDDING = "embedding", _("Embedding")
        INDEXED = "indexed", _("Indexed")
        FAILED = "failed", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="documents"
    )
    file = models.FileField(_("file"), upload_to=document_upload_path, max_length=300)
    filename = models.CharField(_("file name"), max_length=255)
    title = models.CharField(_("title"), max_length=300, blank=True)
    kind = models.CharField(_("type"), max_length=16, blank=True)
    size = models.PositiveBigIntegerField(_("size (bytes)"), default=0)
    sha256 = models.CharField(_("SHA-256"), max_length=64, db_index=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    error = models.TextField(_("error"), blank=True)
    chunk_count = models.PositiveIntegerField(_("chunks"), default=0)
    pages = models.PositiveIntegerField(_("pages"), null=True, blank=True)
    enabled = models.BooleanField(
        _("enabled"), default=True, help_text=_("Disabled documents are not retrieved.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploaded by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("uploaded"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("document")
        verbose_name_plural = _("documents")

    def __str__(self) -> str:
        return self.title or self.filename


class Chunk(models.Model):
    """A passage of a document, as retrieved and cited."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised: retrieval filters chunks by knowledge base without a join.
    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="chunks"
    )
    order = models.PositiveIntegerField(_("order"))
    text = models.TextField(_("text"))
    heading_path = models.CharField(_("heading path"), max_length=1000, blank=True)
    page = models.PositiveIntegerField(_("page"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    # The text cut into search terms at ingestion (knowledge.search.tokenize, space-separated):
    # keyword indexes are rebuilt from these in seconds, where cutting 100k passages again
    # with jieba takes about a minute.
    terms = models.TextField(_("search terms"), blank=True)

    class Meta:
        ordering = ["document", "order"]
        verbose_name = _("chunk")
        verbose_name_plural = _("chunks")
        constraints = [
            models.UniqueConstraint(fields=["document", "order"], name="unique_chunk_order")
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.order}"

    @property
    def location(self) -> str:
        parts = [self.heading_path] if self.heading_path else []
        if self.page is not None:
            parts.append(f"p. {self.page}")
        return ", ".join(parts)


class EmbeddingCache(models.Model):
    """Vectors by (embedder, text hash): re-uploading unchanged content embeds nothing."""

    embedder_key = models.CharField(max_length=200)
    sha256 = models.CharField(max_length=64)
    vector = models.BinaryField()  # float32, little-endian
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["embedder_key", "sha256"], name="unique_embedding_per_text"
            )
        ]

    def __str__(self) -> str:
        return f"{self.embedder_key}:{self.sha256[:12]}"
