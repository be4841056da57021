"""Credentials through the API: write-only values, object permissions, and the publish check
that a workflow names only credentials its publisher may use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER, VIEWER
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Credential, Workflow

SECRET = "sk-live-9d8c7b6a"


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _create(client: Client, name: str = "crm-token", value: str = SECRET) -> Any:
    return client.post(
        "/api/credentials/create/",
        {"name": name, "description": "CRM API", "value": value},
        content_type="application/json",
    )


def test_a_designer_creates_a_credential_whose_value_never_comes_back(designer: Any) -> None:
    client = _client(designer)
    created = _create(client)
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "crm-token"
    assert body["value_set"] is True
    assert SECRET not in created.content.decode()
    listed = client.get("/api/credentials/")
    assert [c["name"] for c in listed.json()["results"]] == ["crm-token"]
    assert SECRET not in listed.content.decode()
    detail = client.get(f"/api/credentials/{body['id']}/")
    assert SECRET not in detail.content.decode()
    # Stored encrypted: the column does not hold the plaintext.
    stored = Credential.objects.get(pk=body["id"]).value
    assert stored.reveal() == SECRET
    assert SECRET not in stored.ciphertext


def test_the_value_can_be_replaced(designer: Any) -> None:
    client = _client(designer)
    pk = _create(client).json()["id"]
    response = client.patch(
        f"/api/credentials/{pk}/update/", {"value": "new-value"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert Credential.objects.get(pk=pk).value.reveal() == "new-value"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has space", "value": "x"}, "name"),
        ({"name": "ok"}, "value"),
        ({"name": "", "value": "x"}, "name"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    designer: Any, body: dict[str, Any], field: str
) -> None:
    response = _client(designer).post(
        "/api/credentials/create/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert field in response.json()
    assert not Credential.objects.exists()


def test_a_duplicate_name_is_refused(designer: Any) -> None:
    client = _client(designer)
    _create(client)
    response = _create(client, value="other")
    assert response.status_code == 400
    assert "name" in response.json()
    assert Credential.objects.get(name="crm-token").value.reveal() == SECRET


def test_others_do_not_see_a_credential_and_viewers_cannot_create_one(
    designer: Any, make_user: Callable[..., Any]
) -> None:
    pk = _create(_client(designer)).json()["id"]
    stranger = _client(make_user("stranger", roles=(DESIGNER,)))
    assert stranger.get("/api/credentials/").json()["results"] == []
    assert stranger.get(f"/api/credentials/{pk}/").status_code == 404
    assert stranger.delete(f"/api/credentials/{pk}/delete/").status_code == 404
    viewer = _client(make_user("viewer", roles=(VIEWER,)))
    assert _create(viewer, name="mine").status_code == 403


def _workflow_using(actor: Any, credential: str) -> Workflow:
    workflow = services.workflow_create(actor=actor, name="calls the CRM")
    graph = {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node(
                "call",
                "http_request",
                url="https://crm.example.com/api",
                auth={"credential": credential, "scheme": "bearer"},
            ),
            node("done", "end", output="{{ nodes.call.status }}"),
        ],
        "edges": [edge("start", "call"), edge("call", "done")],
        "variables": {},
    }
    return services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)


def test_publishing_needs_the_use_permission_on_each_credential(
    designer: Any, make_user: Callable[..., Any]
) -> None:
    _create(_client(designer))
    other = make_user("other", roles=(DESIGNER,))
    workflow = _workflow_using(other, "crm-token")
    client = _client(other)
    refused = client.post(f"/api/workflows/{workflow.pk}/publish/")
    assert refused.status_code == 400
    [problem] = refused.json()["problems"]
    assert problem["code"] == "unknown_resource"
    assert problem["node_id"] == "call"
    assert "crm-token" in problem["message"]
    # The owner shares the right to use it (not to read or change it): publishing works.
    credential = Credential.objects.get(name="crm-token")
    shared = _client(designer).post(
        f"/api/sharing/workflows.credential/{credential.pk}/grant/",
        {"permission": "use", "user": "other"},
        content_type="application/json",
    )
    assert shared.status_code in {200, 201}, shared.json()
    assert client.post(f"/api/workflows/{workflow.pk}/publish/").status_code == 201
    assert client.get(f"/api/credentials/{credential.pk}/").status_code == 404
