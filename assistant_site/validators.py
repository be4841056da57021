"""Validators shared by models and APIs."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def validate_service_url(value: str) -> None:
    """An http(s) URL of a service. Unlike Django's URLValidator it accepts single-label
    host names (`http://vllm:8000/v1`), as container and cluster service names are."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ValidationError(_("Enter a valid URL: %(error)s") % {"error": exc}) from exc
    if parts.scheme not in {"http", "https"}:
        raise ValidationError(_("The URL must start with http:// or https://."))
    if not parts.hostname or any(ch.isspace() for ch in value):
        raise ValidationError(_("The URL must name a host, without spaces."))
    if port == 0:
        raise ValidationError(_("The URL's port must be between 1 and 65535."))
