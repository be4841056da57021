"""System checks for `manage.py check --deploy`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def secrets_and_metrics_configured(app_configs: Any, **kwargs: Any) -> list[Warning]:
    problems = []
    if not settings.SECRETS_KEYS:
        problems.append(
            Warning(
                "SECRETS_KEYS is not set: API keys and bot tokens cannot be stored.",
                hint="Run `manage.py generate_secrets_key` and add the line to the environment.",
                id="assistant.W001",
            )
        )
    if not settings.METRICS_BEARER_TOKEN and not settings.METRICS_ALLOWED_IPS:
        problems.append(
            Warning(
                "/metrics accepts nobody: set METRICS_BEARER_TOKEN or METRICS_ALLOWED_IPS.",
                id="assistant.W002",
            )
        )
    return problems
