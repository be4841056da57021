"""Every workflow endpoint against every kind of caller: allowed, 403 or 404.

"allowed" means the permission check let the request through (the answer is then whatever
the operation gives: 200, 201, 202, or 400 for a request it cannot carry out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER, OPERATOR, VIEWER
from tests.workflows.graphs import echo_graph
from workflows import services
from workflows.models import Run, Workflow

ALLOWED, FORBIDDEN, HIDDEN = "allowed", 403, 404

# endpoint name -> (method, path under /api/, body)
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "detail": ("get", "workflows/{wf}/", None),
    "draft": ("get", "workflows/{wf}/draft/", None),
    "validate": ("post", "workflows/{wf}/validate/", {}),
    "versions": ("get", "workflows/{wf}/versions/", None),
    "diff": ("get", "workflows/{wf}/diff/?from=1", None),
    "export": ("get", "workflows/{wf}/export/", None),
    "run detail": ("get", "runs/{run}/", None),
    "runs": ("get", "workflows/{wf}/runs/", None),
    "update": ("patch", "workflows/{wf}/update/", {"name": "renamed"}),
    "draft save": (
        "post",
        "workflows/{wf}/draft/save/",
        {"graph": echo_graph(), "base_revision": 1},
    ),
    "publish": ("post", "workflows/{wf}/publish/", {}),
    "rollback": ("post", "workflows/{wf}/versions/1/rollback/", None),
    "run": ("post", "workflows/{wf}/runs/create/", {"text": "x", "version": "latest"}),
    "cancel run": ("post", "runs/{run}/cancel/", None),
    "message": ("post", "workflows/{wf}/messages/", {"text": "x", "chat_id": "c", "user_id": "u"}),
    "node test": ("post", "workflows/{wf}/nodes/greet/test/", {"variables": {"trigger": {}}}),
    "delete": ("delete", "workflows/{wf}/delete/", None),
}

VIEW_ONLY = {"detail", "draft", "validate", "versions", "diff", "export", "run detail", "runs"}
MATRIX: dict[str, dict[str, Any]] = {
    "owner": dict.fromkeys(ENDPOINTS, ALLOWED),
    "viewer": {name: ALLOWED if name in VIEW_ONLY else FORBIDDEN for name in ENDPOINTS},
    "operator": {
        name: ALLOWED
        if name in VIEW_ONLY | {"run", "cancel run", "message", "node test"}
        else FORBIDDEN
        for name in ENDPOINTS
    },
    "stranger": dict.fromkeys(ENDPOINTS, HIDDEN),
}
ROLES = {"owner": DESIGNER, "viewer": VIEWER, "operator": OPERATOR, "stranger": DESIGNER}


@pytest.fixture
def setup(make_user: Callable[..., Any]) -> dict[str, Any]:
    owner = make_user("owner", roles=(DESIGNER,))
    workflow = services.workflow_create(actor=owner, name="matrix")
    services.workflow_draft_save(workflow=workflow, graph=echo_graph(), base_revision=0)
    workflow.refresh_from_db()
    version = services.workflow_publish(workflow=workflow, actor=owner)
    run = Run.objects.create(workflow=workflow, version=version, graph=version.graph, input={})
    users = {"owner": owner}
    for name in ("viewer", "operator", "stranger"):
        users[name] = make_user(name, roles=(ROLES[name],))
    return {"workflow": workflow, "run": run, "users": users}


@pytest.mark.parametrize("caller", list(MATRIX))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_permission_matrix(setup: dict[str, Any], caller: str, endpoint: str) -> None:
    method, path, body = ENDPOINTS[endpoint]
    workflow: Workflow = setup["workflow"]
    url = "/api/" + path.format(wf=workflow.pk, run=setup["run"].pk)
    client = Client()
    client.force_login(setup["users"][caller])
    send = getattr(client, method)
    response = send(url, body, content_type="application/json") if body is not None else send(url)
    expected = MATRIX[caller][endpoint]
    if expected == ALLOWED:
        assert response.status_code not in {403, 404}, response.content
        assert response.status_code < 500
    else:
        assert response.status_code == expected, response.content


def test_the_matrix_covers_every_workflow_endpoint() -> None:
    from workflows import urls

    routed = {pattern.name for pattern in urls.urlpatterns}
    covered_elsewhere = {
        "workflow-list",
        "workflow-create",
        "workflow-import",
        "node-types",
        "endpoint-list",
        "endpoint-create",
        "endpoint-detail",
        "endpoint-update",
        "endpoint-delete",
        # tests/workflows/test_llm_workflows.py.
        "endpoint-probe",
        # Signed, not logged in: tests/workflows/test_webhooks.py.
        "workflow-webhook",
        "workflow-webhook-run",
        # tests/workflows/test_credential_api.py.
        "credential-list",
        "credential-create",
        "credential-detail",
        "credential-update",
        "credential-delete",
    }
    assert len(ENDPOINTS) == len(routed - covered_elsewhere)
