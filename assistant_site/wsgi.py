"""WSGI entry point: serves HTTP (the fast path on few cores, see docs/architecture.md)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings.base")

application = get_wsgi_application()
