from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from assistant_site.roles import ADMINISTRATOR
from audit.models import AuditEntry
from audit.services import Actions
from knowledge.models import KnowledgeBase
from workflows import services
from workflows.models import ModelEndpoint, Workflow


@pytest.fixture
def workflow(owner: Any) -> Workflow:
    return services.workflow_create(actor=owner, name="Support bot")


@pytest.fixture
def team(make_user: Callable[..., Any]) -> Group:
    group = Group.objects.create(name="Team Blue")
    make_user("member").groups.add(group)
    return group


def session_client(user: Any) -> APIClient:
    """Logged in through the session, as the browser is, so the audit trail names the user."""
    client = APIClient()
    client.force_login(user)
    return client


def _url(obj: Any, action: str = "") -> str:
    base = f"/api/sharing/{obj._meta.label_lower}/{obj.pk}/"
    return f"{base}{action}/" if action else base


def _stored_grants() -> list[tuple[Any, ...]]:
    users = UserObjectPermission.objects.values_list("user_id", "permission_id", "object_pk")
    groups = GroupObjectPermission.objects.values_list("group_id", "permission_id", "object_pk")
    return sorted([("user", *row) for row in users] + [("group", *row) for row in groups])


def _last_entry(action: str) -> AuditEntry:
    entry = AuditEntry.objects.filter(action=action).order_by("-seq").first()
    assert entry is not None, f"no {action} entry"
    return entry


def test_owner_sees_who_holds_what(owner: Any, workflow: Workflow) -> None:
    response = session_client(owner).get(_url(workflow))

    assert response.status_code == 200
    assert response.json() == {
        "users": [{"user": "owner", "permissions": ["change", "delete", "publish", "run", "view"]}],
        "groups": [],
    }


def test_grant_and_revoke_view_to_a_user(
    owner: Any, collaborator: Any, workflow: Workflow, api_client_for: Callable[[Any], APIClient]
) -> None:
    api = session_client(owner)
    detail = f"/api/workflows/{workflow.pk}/"
    assert api_client_for(collaborator).get(detail).status_code == 404

    granted = api.post(
        _url(workflow, "grant"), {"permission": "view", "user": "collaborator"}, format="json"
    )

    assert granted.status_code == 200
    assert {"user": "collaborator", "permissions": ["view"]} in granted.json()["users"]
    assert api_client_for(collaborator).get(detail).status_code == 200
    entry = _last_entry(Actions.PERMISSION_GRANT)
    assert entry.extra == {"permission": "view_workflow", "user": "collaborator"}
    assert entry.actor_username == "owner"
    assert entry.target_type == "workflows.workflow"
    assert entry.target_id == str(workflow.pk)
    assert entry.target_repr == "Support bot"

    revoked = api.post(
        _url(workflow, "revoke"), {"permission": "view", "user": "collaborator"}, format="json"
    )

    assert revoked.status_code == 200
    assert all(item["user"] != "collaborator" for item in revoked.json()["users"])
    assert api_client_for(collaborator).get(detail).status_code == 404
    entry = _last_entry(Actions.PERMISSION_REVOKE)
    assert entry.extra == {"permission": "view_workflow", "user": "collaborator"}
    assert entry.actor_username == "owner"
    assert entry.target_id == str(workflow.pk)


def test_grant_and_revoke_change_to_a_group(
    owner: Any,
    make_user: Callable[..., Any],
    team: Group,
    workflow: Workflow,
    api_client_for: Callable[[Any], APIClient],
) -> None:
    api = session_client(owner)
    member = api_client_for(team.user_set.get())
    update = f"/api/workflows/{workflow.pk}/update/"

    for permission in ("view", "change"):
        response = api.post(
            _url(workflow, "grant"), {"permission": permission, "group": "Team Blue"}, format="json"
        )
        assert response.status_code == 200
        entry = _last_entry(Actions.PERMISSION_GRANT)
        assert entry.extra == {"permission": f"{permission}_workflow", "group": "Team Blue"}
        assert entry.actor_username == "owner"
    assert response.json()["groups"] == [{"group": "Team Blue", "permissions": ["change", "view"]}]
    assert member.patch(update, {"name": "Team's"}, format="json").status_code == 200

    revoked = api.post(
        _url(workflow, "revoke"), {"permission": "change", "group": "Team Blue"}, format="json"
    )

    assert revoked.status_code == 200
    assert revoked.json()["groups"] == [{"group": "Team Blue", "permissions": ["view"]}]
    entry = _last_entry(Actions.PERMISSION_REVOKE)
    assert entry.extra == {"permission": "change_workflow", "group": "Team Blue"}
    assert member.patch(update, {"name": "Again"}, format="json").status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Team's"


@pytest.mark.parametrize("holder", ["user", "group"])
@pytest.mark.parametrize("permission", ["view", "change"])
def test_grant_then_revoke_is_effective_and_audited(
    owner: Any, team: Group, workflow: Workflow, holder: str, permission: str
) -> None:
    member = team.user_set.get()
    name = "member" if holder == "user" else "Team Blue"
    body = {"permission": permission, holder: name}
    codename = f"workflows.{permission}_workflow"
    api = session_client(owner)
    assert not member.has_perm(codename, workflow)

    granted = api.post(_url(workflow, "grant"), body, format="json")

    assert granted.status_code == 200
    assert {holder: name, "permissions": [permission]} in granted.json()[f"{holder}s"]
    assert type(member).objects.get(pk=member.pk).has_perm(codename, workflow)
    entry = _last_entry(Actions.PERMISSION_GRANT)
    assert (entry.actor_username, entry.target_id) == ("owner", str(workflow.pk))
    assert entry.extra == {"permission": f"{permission}_workflow", holder: name}

    revoked = api.post(_url(workflow, "revoke"), body, format="json")

    assert revoked.status_code == 200
    assert all(item[holder] != name for item in revoked.json()[f"{holder}s"])
    assert not type(member).objects.get(pk=member.pk).has_perm(codename, workflow)
    entry = _last_entry(Actions.PERMISSION_REVOKE)
    assert (entry.actor_username, entry.target_id) == ("owner", str(workflow.pk))
    assert entry.extra == {"permission": f"{permission}_workflow", holder: name}


def test_grant_of_a_custom_permission_works_for_a_knowledge_base(
    make_user: Callable[..., Any], collaborator: Any
) -> None:
    assert not collaborator.has_perm("knowledge.manage_documents_knowledgebase")
    administrator = make_user("boss", roles=(ADMINISTRATOR,))
    base = KnowledgeBase.objects.create(name="Handbook")

    response = session_client(administrator).post(
        _url(base, "grant"),
        {"permission": "manage_documents", "user": "collaborator"},
        format="json",
    )

    assert response.status_code == 200
    assert collaborator.has_perm("knowledge.manage_documents_knowledgebase", base)
    assert _last_entry(Actions.PERMISSION_GRANT).extra == {
        "permission": "manage_documents_knowledgebase",
        "user": "collaborator",
    }


def test_granting_twice_records_one_entry(
    owner: Any, collaborator: Any, workflow: Workflow
) -> None:
    api = session_client(owner)
    body = {"permission": "view", "user": "collaborator"}
    api.post(_url(workflow, "grant"), body, format="json")
    entries = AuditEntry.objects.filter(action=Actions.PERMISSION_GRANT).count()

    response = api.post(_url(workflow, "grant"), body, format="json")

    assert response.status_code == 200
    assert AuditEntry.objects.filter(action=Actions.PERMISSION_GRANT).count() == entries


def test_revoking_what_was_never_granted_records_nothing(
    owner: Any, collaborator: Any, workflow: Workflow
) -> None:
    api = session_client(owner)
    before = AuditEntry.objects.count()

    response = api.post(
        _url(workflow, "revoke"), {"permission": "view", "user": "collaborator"}, format="json"
    )

    assert response.status_code == 200
    assert AuditEntry.objects.count() == before


@pytest.mark.parametrize(
    "case",
    [
        (
            {"permission": "fly", "user": "collaborator"},
            "permission",
            "choose from change, delete, view, publish, run",
        ),
        # "add" is model-wide (a role's), never granted on one object.
        ({"permission": "add", "user": "collaborator"}, "permission", "not a permission"),
        ({"user": "collaborator"}, "permission", "required"),
        ({"permission": "view", "user": "ghost"}, "user", "no user is named 'ghost'"),
        ({"permission": "view", "group": "Nobody"}, "group", "no group is named 'Nobody'"),
        ({"permission": "view", "user": ""}, "user", "blank"),
        ({"permission": "view"}, "user", "exactly one of `user`"),
        (
            {"permission": "view", "user": "collaborator", "group": "Team Blue"},
            "user",
            "exactly one of `user`",
        ),
    ],
)
@pytest.mark.parametrize("action", ["grant", "revoke"])
@pytest.mark.usefixtures("team")
def test_bad_input_is_400_naming_the_field_and_changes_nothing(
    owner: Any,
    collaborator: Any,
    workflow: Workflow,
    action: str,
    case: tuple[dict[str, str], str, str],
) -> None:
    body, field, message = case
    assign_perm("workflows.view_workflow", collaborator, workflow)
    api = session_client(owner)  # logging in writes an entry of its own
    grants = _stored_grants()
    audit_entries = AuditEntry.objects.count()

    response = api.post(_url(workflow, action), body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert message in " ".join(response.json()[field])
    assert _stored_grants() == grants
    assert AuditEntry.objects.count() == audit_entries


def test_caller_with_only_view_may_not_list_grant_or_revoke(
    owner: Any, collaborator: Any, make_user: Callable[..., Any], workflow: Workflow
) -> None:
    assign_perm("workflows.view_workflow", collaborator, workflow)
    make_user("third")
    api = session_client(collaborator)
    grants = _stored_grants()

    assert api.get(_url(workflow)).status_code == 403  # who holds what is for editors
    body = {"permission": "view", "user": "third"}
    grant = api.post(_url(workflow, "grant"), body, format="json")
    revoke = api.post(
        _url(workflow, "revoke"), {"permission": "view", "user": "owner"}, format="json"
    )

    assert grant.status_code == 403
    assert revoke.status_code == 403
    assert _stored_grants() == grants


def test_an_editor_cannot_share_what_they_do_not_hold(
    owner: Any, collaborator: Any, make_user: Callable[..., Any], workflow: Workflow
) -> None:
    assign_perm("workflows.view_workflow", collaborator, workflow)
    assign_perm("workflows.change_workflow", collaborator, workflow)
    make_user("third")
    api = session_client(collaborator)

    escalate = api.post(
        _url(workflow, "grant"), {"permission": "delete", "user": "collaborator"}, format="json"
    )
    assert escalate.status_code == 403
    assert "do not hold" in escalate.json()["detail"]
    assert not collaborator.has_perm("workflows.delete_workflow", workflow)
    passed_on = api.post(
        _url(workflow, "grant"), {"permission": "change", "user": "third"}, format="json"
    )
    assert passed_on.status_code == 200


def test_caller_who_cannot_see_the_object_gets_404(collaborator: Any, workflow: Workflow) -> None:
    api = session_client(collaborator)
    grants = _stored_grants()
    body = {"permission": "view", "user": "collaborator"}

    assert api.get(_url(workflow)).status_code == 404
    assert api.post(_url(workflow, "grant"), body, format="json").status_code == 404
    assert api.post(_url(workflow, "revoke"), body, format="json").status_code == 404
    assert _stored_grants() == grants
    assert not collaborator.has_perm("workflows.view_workflow", workflow)


@pytest.mark.parametrize("label", ["nope.nothing", "auth.user", "auth.group", "audit.auditentry"])
def test_unknown_or_unshareable_model_is_404(
    make_user: Callable[..., Any], collaborator: Any, label: str
) -> None:
    administrator = make_user("boss", roles=(ADMINISTRATOR,))
    api = session_client(administrator)
    body = {"permission": "view", "user": "collaborator"}
    grants = _stored_grants()

    assert api.get(f"/api/sharing/{label}/{collaborator.pk}/").status_code == 404
    grant = api.post(f"/api/sharing/{label}/{collaborator.pk}/grant/", body, format="json")
    assert grant.status_code == 404
    assert _stored_grants() == grants


def test_model_label_is_case_insensitive(make_user: Callable[..., Any]) -> None:
    administrator = make_user("boss", roles=(ADMINISTRATOR,))
    plain = make_user("plain")  # no role, so no model-wide use permission
    endpoint = ModelEndpoint.objects.create(name="chat", base_url="http://llm.internal", model="m")

    response = session_client(administrator).post(
        f"/api/sharing/workflows.ModelEndpoint/{endpoint.pk}/grant/",
        {"permission": "use", "user": "plain"},
        format="json",
    )

    assert response.status_code == 200
    assert plain.has_perm("workflows.use_modelendpoint", endpoint)


def test_anonymous_caller_is_refused(workflow: Workflow) -> None:
    grants = _stored_grants()
    audit_entries = AuditEntry.objects.count()

    response = APIClient().post(
        _url(workflow, "grant"), {"permission": "view", "user": "owner"}, format="json"
    )

    assert response.status_code == 403
    assert _stored_grants() == grants
    assert AuditEntry.objects.count() == audit_entries
