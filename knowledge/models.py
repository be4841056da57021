from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assistant_site.permissions import register_guarded


@register_guarded
class KnowledgeBase(models.Model):
    """A collection of documents that retrieval nodes search. Documents come with ingestion."""

    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("knowledge base")
        verbose_name_plural = _("knowledge bases")
        permissions = [("manage_documents_knowledgebase", _("Can manage documents"))]

    def __str__(self) -> str:
        return self.name
