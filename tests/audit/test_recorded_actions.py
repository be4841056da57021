"""Each recorded action, driven the way people cause it, and the entry an auditor then reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypedDict

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db.models import Max
from django.test import Client
from guardian.shortcuts import assign_perm, remove_perm
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from assistant_site.crypto import MASK, StoredSecret
from assistant_site.roles import AUDITOR
from assistant_site.secrets_rotation import secrets_rotate
from audit.models import AuditEntry
from audit.services import sensitive_access_record
from workflows.models import ModelEndpoint, Workflow
from workflows.services import workflow_create

PASSWORD = "correct horse battery"  # what tests/conftest.py make_user sets
CLIENT_IP = "198.51.100.23"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AuditTest/1.0"
PLAIN_KEY = "sk-live-plaintext-0001"


def _head() -> int:
    head: int | None = AuditEntry.objects.aggregate(head=Max("seq"))["head"]
    return head or 0


def _recorded(since: int, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(seq__gt=since, action=action).order_by("seq"))


def _only(since: int, action: str) -> AuditEntry:
    entries = _recorded(since, action)
    assert len(entries) == 1, [(e.action, e.target_repr, e.extra) for e in entries]
    return entries[0]


def _as_text(entry: AuditEntry) -> str:
    return json.dumps([entry.changes, entry.extra, entry.target_repr], ensure_ascii=False)


class _RequestMeta(TypedDict):
    REMOTE_ADDR: str
    HTTP_USER_AGENT: str
    HTTP_X_REQUEST_ID: str


def _request(request_id: str) -> _RequestMeta:
    """WSGI environ of a browser at CLIENT_IP that sends an X-Request-ID."""
    return {"REMOTE_ADDR": CLIENT_IP, "HTTP_USER_AGENT": BROWSER, "HTTP_X_REQUEST_ID": request_id}


def _assert_request_facts(entry: AuditEntry, request_id: str, source: str) -> None:
    assert entry.ip == CLIENT_IP
    assert entry.user_agent == BROWSER
    assert entry.request_id == request_id
    assert entry.source == source


@pytest.fixture
def endpoint(db: None) -> ModelEndpoint:
    created = ModelEndpoint.objects.create(
        name="vllm-main",
        kind=ModelEndpoint.Kind.CHAT,
        base_url="http://vllm.internal:8000/v1",
        model="qwen2.5-7b",
        api_key=PLAIN_KEY,
    )
    return ModelEndpoint.objects.get(pk=created.pk)  # as loaded: api_key is a StoredSecret


@pytest.fixture
def workflow(owner: Any) -> Workflow:
    return workflow_create(actor=owner, name="Ticket triage")


@pytest.fixture
def staff_user(make_user: Callable[..., Any]) -> Any:
    return make_user("carol", is_staff=True)


def _endpoint_form(endpoint: ModelEndpoint, **changes: str) -> dict[str, str]:
    data = {
        "name": endpoint.name,
        "kind": endpoint.kind,
        "base_url": endpoint.base_url,
        "model": endpoint.model,
        "api_key": "",
        "enabled": "on",
        "timeout_s": "60",
        "max_concurrency": "64",
        "default_params": "{}",
        "_save": "Save",
    }
    return {**data, **changes}


def _user_form(user: Any, groups: list[Group]) -> dict[str, Any]:
    """The admin user change form as a browser submits it, with `groups` selected."""
    joined = user.date_joined
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [group.pk for group in groups],
        "user_permissions": [],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "_save": "Save",
    }


def _permission(label: str) -> Permission:
    app_label, codename = label.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


# --- objects through the admin --------------------------------------------------------------


def test_admin_add_records_every_field_with_the_api_key_masked(
    admin_client: Client, admin_user: Any
) -> None:
    since = _head()
    response = admin_client.post(
        "/admin/workflows/modelendpoint/add/",
        {
            "name": "openai",
            "kind": "chat",
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4o-mini",
            "api_key": PLAIN_KEY,
            "enabled": "on",
            "timeout_s": "60",
            "max_concurrency": "64",
            "default_params": "{}",
            "_save": "Save",
        },
        **_request("req-admin-add"),
    )
    assert response.status_code == 302
    created = ModelEndpoint.objects.get(name="openai")
    assert isinstance(created.api_key, StoredSecret)

    entry = _only(since, "object.create")
    assert entry.actor_username == admin_user.username
    assert entry.actor_id == admin_user.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.modelendpoint",
        str(created.pk),
        "openai",
    )
    assert entry.changes["name"] == [None, "openai"]
    assert entry.changes["base_url"] == [None, "https://api.openai.com/v1"]
    assert entry.changes["model"] == [None, "gpt-4o-mini"]
    assert entry.changes["enabled"] == [None, True]
    assert entry.changes["created_by"] == [None, admin_user.pk]
    assert entry.changes["api_key"] == [None, MASK]
    assert PLAIN_KEY not in _as_text(entry)
    assert created.api_key.ciphertext not in _as_text(entry)
    _assert_request_facts(entry, "req-admin-add", "admin")


def test_admin_change_records_only_changed_fields_and_masks_the_api_key(
    admin_client: Client, admin_user: Any, endpoint: ModelEndpoint
) -> None:
    url = f"/admin/workflows/modelendpoint/{endpoint.pk}/change/"
    old_ciphertext = endpoint.api_key.ciphertext

    # An empty key input keeps the stored key, and the diff does not mention it.
    since = _head()
    response = admin_client.post(
        url, _endpoint_form(endpoint, model="qwen3-8b"), **_request("req-admin-change")
    )
    assert response.status_code == 302
    entry = _only(since, "object.update")
    assert entry.actor_username == admin_user.username
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.modelendpoint",
        str(endpoint.pk),
        "vllm-main",
    )
    assert entry.changes["model"] == ["qwen2.5-7b", "qwen3-8b"]
    assert "api_key" not in entry.changes
    assert "name" not in entry.changes
    assert "base_url" not in entry.changes
    _assert_request_facts(entry, "req-admin-change", "admin")

    # A new key shows as changed, masked on both sides.
    since = _head()
    new_key = "sk-live-plaintext-0002"
    response = admin_client.post(
        url, _endpoint_form(endpoint, model="qwen3-8b", api_key=new_key), **_request("req-2")
    )
    assert response.status_code == 302
    entry = _only(since, "object.update")
    assert entry.changes["api_key"] == [MASK, MASK]
    assert "model" not in entry.changes
    stored = ModelEndpoint.objects.get(pk=endpoint.pk).api_key
    assert stored.reveal() == new_key
    for leaked in (PLAIN_KEY, new_key, old_ciphertext, stored.ciphertext):
        assert leaked not in _as_text(entry)


def test_admin_delete_records_the_last_state_with_the_api_key_masked(
    admin_client: Client, admin_user: Any, endpoint: ModelEndpoint
) -> None:
    since = _head()
    response = admin_client.post(
        f"/admin/workflows/modelendpoint/{endpoint.pk}/delete/",
        {"post": "yes"},
        **_request("req-admin-delete"),
    )
    assert response.status_code == 302
    assert not ModelEndpoint.objects.filter(pk=endpoint.pk).exists()

    entry = _only(since, "object.delete")
    assert entry.actor_username == admin_user.username
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.modelendpoint",
        str(endpoint.pk),
        "vllm-main",
    )
    assert entry.changes["name"] == ["vllm-main", None]
    assert entry.changes["model"] == ["qwen2.5-7b", None]
    assert entry.changes["api_key"] == [MASK, None]
    assert PLAIN_KEY not in _as_text(entry)
    assert endpoint.api_key.ciphertext not in _as_text(entry)
    _assert_request_facts(entry, "req-admin-delete", "admin")


# --- objects through the API ------------------------------------------------------------------


def _api_client(user: Any) -> APIClient:
    # Session login, as the browser front end uses the API (SessionAuthentication).
    client = APIClient()
    client.force_login(user)
    return client


def test_api_create_is_recorded_with_source_api(owner: Any) -> None:
    since = _head()
    response = _api_client(owner).post(
        "/api/workflows/create/",
        {"name": "Refund helper", "description": "Answers refund questions"},
        format="json",
        **_request("req-api-create"),
    )
    assert response.status_code == 201, response.content
    workflow_id = response.json()["id"]

    entry = _only(since, "object.create")
    assert entry.actor_username == "owner"
    assert entry.actor_id == owner.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        workflow_id,
        "Refund helper",
    )
    assert entry.changes["name"] == [None, "Refund helper"]
    assert entry.changes["description"] == [None, "Answers refund questions"]
    assert entry.changes["created_by"] == [None, owner.pk]
    _assert_request_facts(entry, "req-api-create", "api")


def test_api_update_is_recorded_with_a_field_diff(owner: Any, workflow: Workflow) -> None:
    since = _head()
    response = _api_client(owner).patch(
        f"/api/workflows/{workflow.pk}/update/",
        {"name": "Ticket triage v2"},
        format="json",
        **_request("req-api-update"),
    )
    assert response.status_code == 200, response.content

    entry = _only(since, "object.update")
    assert entry.actor_username == "owner"
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        str(workflow.pk),
        "Ticket triage v2",
    )
    assert entry.changes["name"] == ["Ticket triage", "Ticket triage v2"]
    assert "description" not in entry.changes
    _assert_request_facts(entry, "req-api-update", "api")


def test_api_delete_is_recorded_with_the_last_state(owner: Any, workflow: Workflow) -> None:
    since = _head()
    response = _api_client(owner).delete(
        f"/api/workflows/{workflow.pk}/delete/", **_request("req-api-delete")
    )
    assert response.status_code == 204, response.content
    assert not Workflow.objects.filter(pk=workflow.pk).exists()

    entry = _only(since, "object.delete")
    assert entry.actor_username == "owner"
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        str(workflow.pk),
        "Ticket triage",
    )
    assert entry.changes["name"] == ["Ticket triage", None]
    _assert_request_facts(entry, "req-api-delete", "api")


# --- signing in and out -------------------------------------------------------------------------


def test_login_is_recorded_with_address_and_browser(client: Client, staff_user: Any) -> None:
    since = _head()
    response = client.post(
        "/admin/login/",
        {"username": "carol", "password": PASSWORD, "next": "/admin/"},
        **_request("req-login"),
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"

    entry = _only(since, "auth.login")
    assert entry.actor_username == "carol"
    assert entry.actor_id == staff_user.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.user",
        str(staff_user.pk),
        "carol",
    )
    _assert_request_facts(entry, "req-login", "admin")
    # Updating last_login is not an edit of the account worth a second entry.
    assert _recorded(since, "object.update") == []


def test_logout_is_recorded(client: Client, staff_user: Any) -> None:
    client.force_login(staff_user)
    since = _head()
    response = client.post("/admin/logout/", **_request("req-logout"))
    assert response.status_code == 200

    entry = _only(since, "auth.logout")
    assert entry.actor_username == "carol"
    assert entry.actor_id == staff_user.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.user",
        str(staff_user.pk),
        "carol",
    )
    _assert_request_facts(entry, "req-logout", "admin")


@pytest.mark.parametrize("username", ["carol", "no-such-user"])
def test_failed_login_is_recorded_with_the_attempted_username(
    client: Client, staff_user: Any, username: str
) -> None:
    since = _head()
    wrong = "not-the-password-42"
    response = client.post(
        "/admin/login/",
        {"username": username, "password": wrong, "next": "/admin/"},
        **_request("req-login-failed"),
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session

    entry = _only(since, "auth.login_failed")
    assert entry.actor_username == ""
    assert entry.actor_id is None
    assert entry.target_type == "auth.user"
    assert entry.target_repr == username
    assert entry.extra["attempted_username"] == username
    assert wrong not in json.dumps([entry.changes, entry.extra, entry.target_repr])
    _assert_request_facts(entry, "req-login-failed", "admin")
    assert _recorded(since, "auth.login") == []


def test_lockout_after_the_failure_limit_is_recorded(client: Client, staff_user: Any) -> None:
    limit: int = settings.AXES_FAILURE_LIMIT
    since = _head()
    bad = {"username": "carol", "password": "wrong-password-1", "next": "/admin/"}
    for attempt in range(1, limit):
        response = client.post("/admin/login/", bad, **_request(f"req-fail-{attempt}"))
        assert response.status_code == 200
    assert _recorded(since, "auth.locked_out") == []

    response = client.post("/admin/login/", bad, **_request("req-fail-last"))
    assert response.status_code == 429
    entry = _only(since, "auth.locked_out")
    assert entry.target_type == "auth.user"
    assert entry.target_repr == "carol"
    assert entry.extra == {"attempted_username": "carol", "ip_address": CLIENT_IP}
    _assert_request_facts(entry, "req-fail-last", "admin")
    assert len(_recorded(since, "auth.login_failed")) == limit

    # Locked out, the right password does not get in either.
    since = _head()
    good = {"username": "carol", "password": PASSWORD, "next": "/admin/"}
    response = client.post("/admin/login/", good, **_request("req-after-lockout"))
    assert response.status_code == 429
    assert _recorded(since, "auth.login") == []


# --- roles (group membership and group permissions) ---------------------------------------------


@pytest.mark.parametrize("how", ["user.groups.add", "admin user form"])
def test_group_member_add_is_recorded(
    admin_client: Client, admin_user: Any, make_user: Callable[..., Any], how: str
) -> None:
    dave = make_user("dave")
    support = Group.objects.create(name="Support team")
    since = _head()
    if how == "user.groups.add":
        dave.groups.add(support)
        expected_actor = ""
    else:
        response = admin_client.post(
            f"/admin/auth/user/{dave.pk}/change/",
            _user_form(dave, [support]),
            **_request("req-member-add"),
        )
        assert response.status_code == 302, response.content
        expected_actor = admin_user.username

    assert list(dave.groups.all()) == [support]
    entry = _only(since, "group.member_add")
    assert entry.actor_username == expected_actor
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.group",
        str(support.pk),
        "Support team",
    )
    assert entry.extra == {"user": "dave", "group": "Support team"}
    if how == "admin user form":
        _assert_request_facts(entry, "req-member-add", "admin")


@pytest.mark.parametrize("how", ["group.user_set.remove", "user.groups.clear", "admin user form"])
def test_group_member_remove_is_recorded(
    admin_client: Client, admin_user: Any, make_user: Callable[..., Any], how: str
) -> None:
    dave = make_user("dave")
    support = Group.objects.create(name="Support team")
    dave.groups.add(support)
    since = _head()
    if how == "group.user_set.remove":
        support.user_set.remove(dave)
    elif how == "user.groups.clear":
        dave.groups.clear()
    else:
        response = admin_client.post(
            f"/admin/auth/user/{dave.pk}/change/",
            _user_form(dave, []),
            **_request("req-member-remove"),
        )
        assert response.status_code == 302, response.content

    assert not dave.groups.exists()
    entry = _only(since, "group.member_remove")
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.group",
        str(support.pk),
        "Support team",
    )
    assert entry.extra == {"user": "dave", "group": "Support team"}
    if how == "admin user form":
        assert entry.actor_username == admin_user.username
        _assert_request_facts(entry, "req-member-remove", "admin")


@pytest.mark.parametrize("how", ["group.permissions.add", "admin group form"])
def test_group_permission_add_is_recorded(admin_client: Client, admin_user: Any, how: str) -> None:
    reviewers = Group.objects.create(name="Reviewers")
    publish = _permission("workflows.publish_workflow")
    since = _head()
    if how == "group.permissions.add":
        reviewers.permissions.add(publish)
    else:
        response = admin_client.post(
            f"/admin/auth/group/{reviewers.pk}/change/",
            {"name": "Reviewers", "permissions": [publish.pk], "_save": "Save"},
            **_request("req-perm-add"),
        )
        assert response.status_code == 302, response.content

    assert list(reviewers.permissions.all()) == [publish]
    entry = _only(since, "group.permission_add")
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.group",
        str(reviewers.pk),
        "Reviewers",
    )
    assert entry.extra == {"permission": "workflows.publish_workflow"}
    if how == "admin group form":
        assert entry.actor_username == admin_user.username
        _assert_request_facts(entry, "req-perm-add", "admin")


@pytest.mark.parametrize(
    "how",
    [
        "group.permissions.remove",
        "group.permissions.clear",
        "permission.group_set.clear",
        "admin group form",
    ],
)
def test_group_permission_remove_is_recorded(
    admin_client: Client, admin_user: Any, how: str
) -> None:
    reviewers = Group.objects.create(name="Reviewers")
    # A permission no role holds, so that clearing it from its side touches Reviewers only.
    delete_group = _permission("auth.delete_group")
    reviewers.permissions.add(delete_group)
    since = _head()
    if how == "group.permissions.remove":
        reviewers.permissions.remove(delete_group)
    elif how == "group.permissions.clear":
        reviewers.permissions.clear()
    elif how == "permission.group_set.clear":
        delete_group.group_set.clear()
    else:
        response = admin_client.post(
            f"/admin/auth/group/{reviewers.pk}/change/",
            {"name": "Reviewers", "_save": "Save"},
            **_request("req-perm-remove"),
        )
        assert response.status_code == 302, response.content

    assert not reviewers.permissions.exists()
    entry = _only(since, "group.permission_remove")
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "auth.group",
        str(reviewers.pk),
        "Reviewers",
    )
    assert entry.extra == {"permission": "auth.delete_group"}
    if how == "admin group form":
        assert entry.actor_username == admin_user.username
        _assert_request_facts(entry, "req-perm-remove", "admin")


# --- object permissions -----------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["user", "group"])
def test_object_permission_grant_is_recorded(
    workflow: Workflow, collaborator: Any, holder: str
) -> None:
    team = Group.objects.create(name="Support team")
    since = _head()
    assign_perm("change_workflow", collaborator if holder == "user" else team, workflow)

    entry = _only(since, "permission.grant")
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        str(workflow.pk),
        "Ticket triage",
    )
    expected = {"user": "collaborator"} if holder == "user" else {"group": "Support team"}
    assert entry.extra == {"permission": "change_workflow", **expected}

    # Granting what is already held changes nothing and records nothing.
    since = _head()
    assign_perm("change_workflow", collaborator if holder == "user" else team, workflow)
    assert _recorded(since, "permission.grant") == []


@pytest.mark.parametrize("holder", ["user", "group"])
def test_object_permission_revoke_is_recorded(
    workflow: Workflow, collaborator: Any, holder: str
) -> None:
    team = Group.objects.create(name="Support team")
    who = collaborator if holder == "user" else team
    assign_perm("change_workflow", who, workflow)
    since = _head()
    remove_perm("change_workflow", who, workflow)

    entry = _only(since, "permission.revoke")
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        str(workflow.pk),
        "Ticket triage",
    )
    expected = {"user": "collaborator"} if holder == "user" else {"group": "Support team"}
    assert entry.extra == {"permission": "change_workflow", **expected}
    assert not collaborator.has_perm("workflows.change_workflow", workflow)


# --- secrets and sensitive data -------------------------------------------------------------------


def test_secret_reveal_is_recorded_only_when_confirmed(
    admin_client: Client, admin_user: Any, endpoint: ModelEndpoint
) -> None:
    url = f"/admin/workflows/modelendpoint/{endpoint.pk}/reveal/api_key/"
    since = _head()
    response = admin_client.get(url, **_request("req-reveal-get"))
    assert response.status_code == 200
    assert b'<form method="post">' in response.content
    assert PLAIN_KEY.encode() not in response.content
    assert _recorded(since, "secret.reveal") == []

    response = admin_client.post(url, **_request("req-reveal"))
    assert response.status_code == 200
    assert f'<pre id="revealed-secret">{PLAIN_KEY}</pre>'.encode() in response.content

    entry = _only(since, "secret.reveal")
    assert entry.actor_username == admin_user.username
    assert entry.actor_id == admin_user.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.modelendpoint",
        str(endpoint.pk),
        "vllm-main",
    )
    assert entry.extra == {"field": "api_key", "succeeded": True}
    assert PLAIN_KEY not in _as_text(entry)
    _assert_request_facts(entry, "req-reveal", "admin")


def test_sensitive_access_is_recorded(workflow: Workflow, collaborator: Any) -> None:
    since = _head()
    sensitive_access_record(target=workflow, what="conversation transcript", actor=collaborator)

    entry = _only(since, "sensitive.access")
    assert entry.actor_username == "collaborator"
    assert entry.actor_id == collaborator.pk
    assert (entry.target_type, entry.target_id, entry.target_repr) == (
        "workflows.workflow",
        str(workflow.pk),
        "Ticket triage",
    )
    assert entry.extra == {"what": "conversation transcript"}
    assert entry.source == "system"


def test_audit_export_is_recorded_with_its_filters_and_row_count(
    client: Client, make_user: Callable[..., Any], workflow: Workflow, collaborator: Any
) -> None:
    auditor = make_user("audrey", roles=(AUDITOR,))
    for what in ("transcript", "attachments"):
        sensitive_access_record(target=workflow, what=what, actor=collaborator)
    client.force_login(auditor)
    since = _head()
    response = client.get(
        "/admin/audit/auditentry/export.csv?action=sensitive.access", **_request("req-export")
    )
    assert response.status_code == 200
    body = response.getvalue().decode()
    assert len(body.splitlines()) == 1 + 2  # header and the two entries

    entry = _only(since, "audit.export")
    assert entry.actor_username == "audrey"
    assert entry.actor_id == auditor.pk
    assert entry.target_type == "audit.auditentry"
    assert entry.extra == {"filters": {"action": "sensitive.access"}, "rows": 2}
    _assert_request_facts(entry, "req-export", "admin")


def test_secrets_key_rotation_is_recorded(settings: Settings, endpoint: ModelEndpoint) -> None:
    ModelEndpoint.objects.create(
        name="no-key", base_url="http://tei.internal:8080/v1", model="bge-m3", kind="embedding"
    )
    old_key_id = endpoint.api_key.key_id
    new_key = base64.b64decode(b"A" * 43 + b"=")  # 32 bytes
    settings.SECRETS_KEYS = {"next2027": new_key, **settings.SECRETS_KEYS}
    settings.SECRETS_CURRENT_KEY_ID = "next2027"
    since = _head()

    result = secrets_rotate()

    assert result.total == 1
    stored = ModelEndpoint.objects.get(pk=endpoint.pk).api_key
    assert stored.key_id == "next2027" != old_key_id
    assert stored.reveal() == PLAIN_KEY
    entry = _only(since, "secret.rotate_key")
    assert entry.extra == {
        "key_id": "next2027",
        "re_encrypted": 1,
        "fields": {"workflows.ModelEndpoint.api_key": 1},
    }
    assert entry.source == "system"
    for leaked in (PLAIN_KEY, stored.ciphertext, endpoint.api_key.ciphertext):
        assert leaked not in _as_text(entry)
    # The rotation rewrites ciphertexts only; it is one entry, not one edit per object.
    assert _recorded(since, "object.update") == []
