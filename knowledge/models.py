from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from assistant_site.models import OwnedModel
from assistant_site.permissions import register_guarded


@register_guarded
class KnowledgeBase(OwnedModel):
    """A collection of documents that retrieval nodes search. Documents come with ingestion."""

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("knowledge base")
        verbose_name_plural = _("knowledge bases")
        permissions = [("manage_documents_knowledgebase", _("Can manage documents"))]

    def __str__(self) -> str:
        return self.name
