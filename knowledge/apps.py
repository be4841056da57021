from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = _("Knowledge")

    def ready(self) -> None:
        from audit import registry
        from knowledge.models import KnowledgeBase

        # Documents are audited by their services (upload, enable, disable, retry, delete,
        # download): their status changes many times during ingestion and is not an action.
        registry.register(KnowledgeBase)
