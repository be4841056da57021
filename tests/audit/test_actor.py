from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework.test import APIClient

from assistant_site.roles import DESIGNER
from audit.models import AuditEntry


def test_api_writes_name_the_caller_whatever_authenticated_them(
    make_user: Callable[..., Any], api_client_for: Callable[[Any], APIClient]
) -> None:
    # The API authenticates after Django's middleware has run (DRF); the actor must still be
    # the caller, not blank.
    designer = make_user("designer-1", roles=(DESIGNER,))
    response = api_client_for(designer).post(
        "/api/workflows/create/", {"name": "报销助手"}, format="json"
    )
    assert response.status_code == 201
    entry = AuditEntry.objects.filter(action="object.create", target_repr="报销助手").get()
    assert entry.actor_username == "designer-1"
    assert entry.actor_id == designer.pk
    assert entry.source == "api"
