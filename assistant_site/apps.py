from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger("assistant_site")


class AssistantSiteConfig(AppConfig):
    name = "assistant_site"
    verbose_name = _("Assistant Studio")

    def ready(self) -> None:
        from assistant_site import checks  # noqa: F401  (registers system checks)

        for reason in settings.EMBEDDED_FALLBACKS:
            logger.warning("embedded fallback: %s", reason)
        post_migrate.connect(_sync_roles, dispatch_uid="assistant_site:roles")


def _sync_roles(sender: AppConfig, **kwargs: Any) -> None:
    # Runs after every app's migrations; the last run sees every app's permissions.
    from assistant_site.roles import roles_sync

    roles_sync(using=kwargs.get("using", "default"))
