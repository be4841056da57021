from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from assistant_site.roles import ADMINISTRATOR, CURATOR, OPERATOR, VIEWER
from knowledge.models import KnowledgeBase
from workflows import services
from workflows.models import ModelEndpoint, Workflow

ApiClientFor = Callable[[Any], APIClient]


@pytest.fixture
def workflow(owner: Any) -> Workflow:
    return services.workflow_create(actor=owner, name="Support bot")


def _names(response: Any) -> list[str]:
    assert response.status_code == 200
    return [item["name"] for item in response.json()["results"]]


def test_owner_may_view_change_and_delete_their_workflow(
    api_client_for: ApiClientFor, owner: Any, workflow: Workflow
) -> None:
    api = api_client_for(owner)

    assert api.get(f"/api/workflows/{workflow.pk}/").status_code == 200
    response = api.patch(
        f"/api/workflows/{workflow.pk}/update/", {"name": "Renamed"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert api.delete(f"/api/workflows/{workflow.pk}/delete/").status_code == 204
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_another_user_gets_404_for_every_operation(
    api_client_for: ApiClientFor, collaborator: Any, workflow: Workflow
) -> None:
    api = api_client_for(collaborator)

    assert api.get(f"/api/workflows/{workflow.pk}/").status_code == 404
    patch = api.patch(f"/api/workflows/{workflow.pk}/update/", {"name": "Mine"}, format="json")
    assert patch.status_code == 404
    assert api.delete(f"/api/workflows/{workflow.pk}/delete/").status_code == 404
    workflow.refresh_from_db()
    assert workflow.name == "Support bot"


def test_view_grant_shows_the_object_but_refuses_changes_with_403(
    api_client_for: ApiClientFor, collaborator: Any, workflow: Workflow
) -> None:
    assign_perm("workflows.view_workflow", collaborator, workflow)
    api = api_client_for(collaborator)

    assert api.get(f"/api/workflows/{workflow.pk}/").json()["name"] == "Support bot"
    patch = api.patch(f"/api/workflows/{workflow.pk}/update/", {"name": "Mine"}, format="json")
    assert patch.status_code == 403
    assert api.delete(f"/api/workflows/{workflow.pk}/delete/").status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Support bot"


def test_change_grant_allows_changes_but_not_deletion(
    api_client_for: ApiClientFor, collaborator: Any, workflow: Workflow
) -> None:
    assign_perm("workflows.view_workflow", collaborator, workflow)
    assign_perm("workflows.change_workflow", collaborator, workflow)
    api = api_client_for(collaborator)

    patch = api.patch(f"/api/workflows/{workflow.pk}/update/", {"name": "Ours"}, format="json")
    assert patch.status_code == 200
    assert api.delete(f"/api/workflows/{workflow.pk}/delete/").status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Ours"


def test_a_change_grant_without_view_still_hides_the_object(
    api_client_for: ApiClientFor, collaborator: Any, workflow: Workflow
) -> None:
    assign_perm("workflows.change_workflow", collaborator, workflow)
    api = api_client_for(collaborator)

    patch = api.patch(f"/api/workflows/{workflow.pk}/update/", {"name": "Mine"}, format="json")
    assert patch.status_code == 404
    workflow.refresh_from_db()
    assert workflow.name == "Support bot"


def test_group_grant_reaches_members_of_a_team_group(
    api_client_for: ApiClientFor, make_user: Callable[..., Any], workflow: Workflow
) -> None:
    team = Group.objects.create(name="Team Blue")
    member = make_user("member")  # no role at all: only the team grant counts
    member.groups.add(team)
    outsider = make_user("outsider")
    assign_perm("workflows.view_workflow", team, workflow)

    member_api = api_client_for(member)
    assert member_api.get(f"/api/workflows/{workflow.pk}/").status_code == 200
    assert _names(member_api.get("/api/workflows/")) == ["Support bot"]
    patch = member_api.patch(
        f"/api/workflows/{workflow.pk}/update/", {"name": "Team"}, format="json"
    )
    assert patch.status_code == 403

    outsider_api = api_client_for(outsider)
    assert outsider_api.get(f"/api/workflows/{workflow.pk}/").status_code == 404
    assert _names(outsider_api.get("/api/workflows/")) == []


def test_leaving_the_team_loses_the_group_grant(
    api_client_for: ApiClientFor, make_user: Callable[..., Any], workflow: Workflow
) -> None:
    team = Group.objects.create(name="Team Blue")
    member = make_user("member")
    member.groups.add(team)
    assign_perm("workflows.view_workflow", team, workflow)
    member.groups.remove(team)

    assert api_client_for(member).get(f"/api/workflows/{workflow.pk}/").status_code == 404


def test_workflow_list_shows_only_viewable_workflows(
    api_client_for: ApiClientFor, owner: Any, collaborator: Any, make_user: Callable[..., Any]
) -> None:
    services.workflow_create(actor=owner, name="Owner's")
    theirs = services.workflow_create(actor=collaborator, name="Collaborator's")
    shared = services.workflow_create(actor=collaborator, name="Shared with owner")
    assign_perm("workflows.view_workflow", owner, shared)
    nobody = make_user("nobody")

    assert _names(api_client_for(owner).get("/api/workflows/")) == [
        "Owner's",
        "Shared with owner",
    ]
    assert _names(api_client_for(collaborator).get("/api/workflows/")) == [
        theirs.name,
        "Shared with owner",
    ]
    assert _names(api_client_for(nobody).get("/api/workflows/")) == []


def test_model_endpoint_list_shows_only_viewable_endpoints(
    api_client_for: ApiClientFor, make_user: Callable[..., Any]
) -> None:
    administrator = make_user("boss", roles=(ADMINISTRATOR,))
    plain = make_user("plain")
    endpoint = services.model_endpoint_create(
        actor=administrator,
        data={"name": "chat", "base_url": "http://llm.internal/v1", "model": "m"},
    )
    ModelEndpoint.objects.create(name="hidden", base_url="http://llm.internal/v1", model="m")

    assert _names(api_client_for(plain).get("/api/model-endpoints/")) == []
    assign_perm("workflows.view_modelendpoint", plain, endpoint)
    assert _names(api_client_for(plain).get("/api/model-endpoints/")) == ["chat"]
    assert api_client_for(plain).get(f"/api/model-endpoints/{endpoint.pk}/").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/workflows/not-a-uuid/",
        "/api/workflows/00000000-0000-0000-0000-000000000000/",
        "/api/workflows/00000000-0000-0000-0000-000000000000/update/",
        "/api/model-endpoints/abc/",
        "/api/model-endpoints/999999/",
        "/api/sharing/workflows.workflow/not-a-uuid/",
        "/api/sharing/workflows.workflow/00000000-0000-0000-0000-000000000000/",
        "/api/sharing/workflows.modelendpoint/abc/",
        "/api/sharing/workflows.modelendpoint/999999999999999999999999/",
    ],
)
def test_malformed_or_unknown_id_is_404(
    api_client_for: ApiClientFor, make_user: Callable[..., Any], path: str
) -> None:
    # An administrator sees everything, so a 404 can only mean "no such object".
    api = api_client_for(make_user("boss", roles=(ADMINISTRATOR,)))

    method = api.patch if path.endswith("/update/") else api.get
    assert method(path, {}, format="json").status_code == 404


def test_role_permission_covers_every_object(
    api_client_for: ApiClientFor, owner: Any, collaborator: Any, make_user: Callable[..., Any]
) -> None:
    first = services.workflow_create(actor=owner, name="First")
    second = services.workflow_create(actor=collaborator, name="Second")
    viewer = api_client_for(make_user("viewer", roles=(VIEWER,)))
    administrator = api_client_for(make_user("boss", roles=(ADMINISTRATOR,)))

    assert _names(viewer.get("/api/workflows/")) == ["First", "Second"]
    for workflow in (first, second):
        assert viewer.get(f"/api/workflows/{workflow.pk}/").status_code == 200
        patch = administrator.patch(
            f"/api/workflows/{workflow.pk}/update/", {"description": "seen"}, format="json"
        )
        assert patch.status_code == 200
    assert set(Workflow.objects.values_list("description", flat=True)) == {"seen"}


def test_operator_sees_every_workflow_but_changes_none(
    api_client_for: ApiClientFor, make_user: Callable[..., Any], workflow: Workflow
) -> None:
    api = api_client_for(make_user("ops", roles=(OPERATOR,)))

    assert api.get(f"/api/workflows/{workflow.pk}/").status_code == 200
    patch = api.patch(f"/api/workflows/{workflow.pk}/update/", {"name": "Ops"}, format="json")
    assert patch.status_code == 403


def test_anonymous_callers_are_refused(workflow: Workflow) -> None:
    api = APIClient()

    assert api.get("/api/workflows/").status_code == 403
    assert api.get(f"/api/workflows/{workflow.pk}/").status_code == 403


def test_admin_changelist_shows_a_curator_only_knowledge_bases_shared_with_them(
    make_user: Callable[..., Any], owner: Any
) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    shared = KnowledgeBase.objects.create(name="Shared handbook", created_by=owner)
    private = KnowledgeBase.objects.create(name="Private notes", created_by=owner)
    assign_perm("knowledge.view_knowledgebase", curator, shared)
    browser = Client()
    browser.force_login(curator)

    changelist = browser.get("/admin/knowledge/knowledgebase/")

    assert changelist.status_code == 200
    page = changelist.content.decode()
    assert "Shared handbook" in page
    assert "Private notes" not in page
    shared_page = browser.get(f"/admin/knowledge/knowledgebase/{shared.pk}/change/")
    assert shared_page.status_code == 200
    # A knowledge base outside the curator's grants is "not found": back to the index.
    private_page = browser.get(f"/admin/knowledge/knowledgebase/{private.pk}/change/")
    assert private_page.status_code == 302
    assert "Private notes" not in browser.get(private_page["Location"]).content.decode()


def test_admin_view_grant_does_not_allow_editing(make_user: Callable[..., Any], owner: Any) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    shared = KnowledgeBase.objects.create(name="Shared handbook", created_by=owner)
    assign_perm("knowledge.view_knowledgebase", curator, shared)
    browser = Client()
    browser.force_login(curator)

    response = browser.post(
        f"/admin/knowledge/knowledgebase/{shared.pk}/change/",
        {"name": "Edited", "description": ""},
    )

    assert response.status_code == 403
    shared.refresh_from_db()
    assert shared.name == "Shared handbook"


def test_admin_change_grant_allows_editing(make_user: Callable[..., Any], owner: Any) -> None:
    curator = make_user("curator", roles=(CURATOR,))
    shared = KnowledgeBase.objects.create(name="Shared handbook", created_by=owner)
    assign_perm("knowledge.view_knowledgebase", curator, shared)
    assign_perm("knowledge.change_knowledgebase", curator, shared)
    browser = Client()
    browser.force_login(curator)

    response = browser.post(
        f"/admin/knowledge/knowledgebase/{shared.pk}/change/",
        {"name": "Edited", "description": "", "chunk_size": "500", "chunk_overlap": "50"},
    )

    assert response.status_code == 302
    shared.refresh_from_db()
    assert shared.name == "Edited"
