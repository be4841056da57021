"""Adds the authenticated user to the request context that audit entries read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from assistant_site import request_context


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return self.get_response(request)
        context = dataclasses.replace(
            request_context.current(), actor_id=user.pk, actor_username=user.get_username()
        )
        token = request_context.set_context(context)
        try:
            return self.get_response(request)
        finally:
            request_context.reset_context(token)
