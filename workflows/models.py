from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from assistant_site.crypto import EncryptedTextField
from assistant_site.permissions import register_guarded
from assistant_site.validators import validate_service_url


@register_guarded
class Workflow(models.Model):
    """A graph of nodes designed in the editor. The graph and versions come with the engine."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
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
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
        permissions = [
            ("publish_workflow", _("Can publish workflow")),
            ("run_workflow", _("Can run workflow")),
        ]

    def __str__(self) -> str:
        return self.name


@register_guarded
class ModelEndpoint(models.Model):
    """An OpenAI-compatible model server (vLLM or a commercial API) that LLM nodes call."""

    class Kind(models.TextChoices):
        CHAT = "chat", _("Chat")
        EMBEDDING = "embedding", _("Embedding")
        RERANK = "rerank", _("Rerank")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.CHAT)
    base_url = models.CharField(
        _("base URL"),
        max_length=500,
        validators=[validate_service_url],
        help_text=_("For example http://vllm:8000/v1"),
    )
    model = models.CharField(_("served model name"), max_length=200)
    api_key = EncryptedTextField(_("API key"))
    enabled = models.BooleanField(_("enabled"), default=True)
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
        verbose_name = _("model endpoint")
        verbose_name_plural = _("model endpoints")
        permissions = [("use_modelendpoint", _("Can use model endpoint in workflows"))]

    def __str__(self) -> str:
        return self.name
