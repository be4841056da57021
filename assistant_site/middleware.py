"""Cross-cutting HTTP middleware: request ids, metrics, Content-Security-Policy."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.http.request import split_domain_port, validate_host

from assistant_site import request_context
from assistant_site.metrics import HTTP_LATENCY, HTTP_REQUESTS

GetResponse = Callable[[HttpRequest], HttpResponseBase]
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address: REMOTE_ADDR, or the hop our own proxies saw (TRUSTED_PROXIES)."""
    proxies: int = getattr(settings, "TRUSTED_PROXIES", 0)
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    remote = request.META.get("REMOTE_ADDR")
    return str(remote) if remote else None


class RequestIdMiddleware:
    """Gives each request an id (the caller's X-Request-ID when well-formed)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_context.set_context(
            request_context.RequestContext(
                request_id=request_id,
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", "")[:512],
                source="admin" if request.path.startswith("/admin/") else "api",
                request=request,
            )
        )
        try:
            response = self.get_response(request)
        finally:
            request_context.reset_context(token)
        response["X-Request-ID"] = request_id
        return response


class MetricsMiddleware:
    """Counts requests and their latency by route template (never by raw path)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = ("/" + match.route) if match is not None and match.route else "<unmatched>"
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
        return response


_KNOWN_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


# Probes and scrapes come addressed by an internal name (web:8000, a pod's address) that
# ALLOWED_HOSTS rightly refuses for pages; these views read nothing from the Host header.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ProbeMiddleware:
    """For /healthz, /readyz and /metrics, a Host outside ALLOWED_HOSTS is replaced by an
    allowed one, so the probe is answered (with every other middleware's headers) instead
    of refused with 400."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info in PROBE_PATHS:
            host, _port = split_domain_port(request.META.get("HTTP_HOST", ""))
            if not validate_host(host, settings.ALLOWED_HOSTS):
                allowed = [h.lstrip(".") for h in settings.ALLOWED_HOSTS if h.strip(".*")]
                if allowed:
                    request.META["HTTP_HOST"] = allowed[0]
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        policy: str = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
