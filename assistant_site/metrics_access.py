"""Who may read `/metrics`, the web's and a worker's (assistant_site/worker_metrics.py): the
bearer token ``METRICS_BEARER_TOKEN``, or an address in ``METRICS_ALLOWED_IPS``."""

from __future__ import annotations

import ipaddress
import secrets

from django.conf import settings


def scrape_allowed(address: str | None, authorization: str) -> bool:
    token: str = settings.METRICS_BEARER_TOKEN
    if token and authorization.startswith("Bearer "):
        return secrets.compare_digest(
            authorization.removeprefix("Bearer ").encode(), token.encode()
        )
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS
    )
