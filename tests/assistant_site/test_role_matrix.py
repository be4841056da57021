"""What each role may do, through the API and the admin, as the ROLES table implies.

Every role acts on a workflow that another user (a Designer) created and owns; no object
permission is granted to the role's user, so only the role's model-wide permissions count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from assistant_site.roles import (
    ADMINISTRATOR,
    AUDITOR,
    CURATOR,
    DESIGNER,
    OPERATOR,
    ROLES,
    VIEWER,
)
from knowledge.models import KnowledgeBase
from workflows import services
from workflows.models import ModelEndpoint, Workflow

ALLOWED = "allowed"
NOT_LISTED = "not listed"  # the list answers 200 but leaves the object out
FORBIDDEN = "403"
NOT_FOUND = "404"  # the object's existence is not revealed
TO_LOGIN = "redirect to login"  # the admin sends non-staff users to its login page

A, NL, F, NF, L = ALLOWED, NOT_LISTED, FORBIDDEN, NOT_FOUND, TO_LOGIN

ROLE_COLUMNS = (ADMINISTRATOR, DESIGNER, OPERATOR, CURATOR, AUDITOR, VIEWER)

# fmt: off
MATRIX: dict[str, tuple[str, str, str, str, str, str]] = {
    # action                           Admin  Design Oper   Curat  Audit  Viewer
    "api: list workflows":            (A,     NL,    A,     NL,    NL,    A),
    "api: create workflow":           (A,     A,     F,     F,     F,     F),
    "api: view other's workflow":     (A,     NF,    A,     NF,    NF,    A),
    "api: update other's workflow":   (A,     NF,    F,     NF,    NF,    F),
    "api: delete other's workflow":   (A,     NF,    F,     NF,    NF,    F),
    "api: create model endpoint":     (A,     F,     F,     F,     F,     F),
    "admin: open /admin/":            (A,     L,     A,     A,     A,     L),
    "admin: workflow changelist":     (A,     L,     A,     F,     F,     L),
    "admin: add knowledge base":      (A,     L,     F,     A,     F,     L),
    "admin: audit trail changelist":  (A,     L,     F,     F,     A,     L),
    "admin: user changelist":         (A,     L,     F,     F,     F,     L),
}
# fmt: on


def _api_outcome(status_code: int, allowed: int) -> str:
    if status_code == allowed:
        return ALLOWED
    return {403: FORBIDDEN, 404: NOT_FOUND}.get(status_code, f"unexpected {status_code}")


def _admin_outcome(response: Any, allowed: int = 200) -> str:
    if response.status_code == allowed:
        return ALLOWED
    if response.status_code == 302 and response["Location"].startswith("/admin/login/"):
        return TO_LOGIN
    if response.status_code == 403:
        return FORBIDDEN
    return f"unexpected {response.status_code}"


class Scene:
    def __init__(self, user: Any, workflow: Workflow) -> None:
        self.user = user
        self.workflow = workflow
        self.api = APIClient()
        self.api.force_authenticate(user=user)
        self.browser = Client()
        self.browser.force_login(user)


def list_workflows(scene: Scene) -> str:
    response = scene.api.get("/api/workflows/")
    assert response.status_code == 200
    names = [item["name"] for item in response.json()["results"]]
    return ALLOWED if scene.workflow.name in names else NOT_LISTED


def create_workflow(scene: Scene) -> str:
    response = scene.api.post("/api/workflows/create/", {"name": "Fresh"}, format="json")
    outcome = _api_outcome(response.status_code, 201)
    assert Workflow.objects.filter(name="Fresh").exists() is (outcome == ALLOWED)
    return outcome


def view_workflow(scene: Scene) -> str:
    response = scene.api.get(f"/api/workflows/{scene.workflow.pk}/")
    outcome = _api_outcome(response.status_code, 200)
    if outcome == ALLOWED:
        assert response.json()["name"] == scene.workflow.name
    return outcome


def update_workflow(scene: Scene) -> str:
    response = scene.api.patch(
        f"/api/workflows/{scene.workflow.pk}/update/", {"name": "Renamed"}, format="json"
    )
    outcome = _api_outcome(response.status_code, 200)
    scene.workflow.refresh_from_db()
    assert (scene.workflow.name == "Renamed") is (outcome == ALLOWED)
    return outcome


def delete_workflow(scene: Scene) -> str:
    response = scene.api.delete(f"/api/workflows/{scene.workflow.pk}/delete/")
    outcome = _api_outcome(response.status_code, 204)
    assert Workflow.objects.filter(pk=scene.workflow.pk).exists() is (outcome != ALLOWED)
    return outcome


def create_model_endpoint(scene: Scene) -> str:
    response = scene.api.post(
        "/api/model-endpoints/create/",
        {"name": "vllm", "base_url": "http://vllm.internal:8000/v1", "model": "qwen"},
        format="json",
    )
    outcome = _api_outcome(response.status_code, 201)
    assert ModelEndpoint.objects.filter(name="vllm").exists() is (outcome == ALLOWED)
    return outcome


def open_admin_index(scene: Scene) -> str:
    return _admin_outcome(scene.browser.get("/admin/"))


def open_workflow_changelist(scene: Scene) -> str:
    response = scene.browser.get("/admin/workflows/workflow/")
    outcome = _admin_outcome(response)
    if outcome == ALLOWED:
        assert scene.workflow.name in response.content.decode()
    return outcome


def add_knowledge_base(scene: Scene) -> str:
    response = scene.browser.post(
        "/admin/knowledge/knowledgebase/add/", {"name": "Handbook", "description": ""}
    )
    created = KnowledgeBase.objects.filter(name="Handbook").first()
    if response.status_code == 302 and created is not None:
        # The creator owns what they added and can open it again.
        assert created.created_by == scene.user
        change_page = scene.browser.get(f"/admin/knowledge/knowledgebase/{created.pk}/change/")
        assert change_page.status_code == 200
        return ALLOWED
    assert created is None
    return _admin_outcome(response)


def open_audit_changelist(scene: Scene) -> str:
    return _admin_outcome(scene.browser.get("/admin/audit/auditentry/"))


def open_user_changelist(scene: Scene) -> str:
    response = scene.browser.get("/admin/auth/user/")
    outcome = _admin_outcome(response)
    if outcome == ALLOWED:
        assert "owner" in response.content.decode()
    return outcome


ACTIONS: dict[str, Callable[[Scene], str]] = {
    "api: list workflows": list_workflows,
    "api: create workflow": create_workflow,
    "api: view other's workflow": view_workflow,
    "api: update other's workflow": update_workflow,
    "api: delete other's workflow": delete_workflow,
    "api: create model endpoint": create_model_endpoint,
    "admin: open /admin/": open_admin_index,
    "admin: workflow changelist": open_workflow_changelist,
    "admin: add knowledge base": add_knowledge_base,
    "admin: audit trail changelist": open_audit_changelist,
    "admin: user changelist": open_user_changelist,
}

CASES = [
    pytest.param(role, action, MATRIX[action][column], id=f"{role}-{action}")
    for action in MATRIX
    for column, role in enumerate(ROLE_COLUMNS)
]


def test_matrix_covers_every_role_and_action() -> None:
    assert sorted(ROLE_COLUMNS) == sorted(role.name for role in ROLES)
    assert list(MATRIX) == list(ACTIONS)


@pytest.mark.parametrize(("role", "action", "expected"), CASES)
def test_role_matrix(
    make_user: Callable[..., Any], owner: Any, role: str, action: str, expected: str
) -> None:
    workflow = services.workflow_create(actor=owner, name="Owned by someone else")
    user = make_user(f"as-{role.lower()}", roles=(role,))

    assert ACTIONS[action](Scene(user, workflow)) == expected
