from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm

from audit.models import AuditEntry
from workflows.models import Workflow


@pytest.mark.django_db
def test_administrator_sees_users_roles_grants_and_the_audit_trail(
    admin_client: Client, make_user: Any
) -> None:
    alice = make_user("alice")
    workflow = Workflow.objects.create(name="客服问答")
    assign_perm("run_workflow", alice, workflow)

    users = admin_client.get("/admin/auth/user/").content.decode()
    assert "alice" in users
    roles = admin_client.get("/admin/auth/group/").content.decode()
    for role in ("Administrator", "Designer", "Operator", "Curator", "Auditor", "Viewer"):
        assert role in roles
    grants = admin_client.get("/admin/guardian/userobjectpermission/").content.decode()
    assert "alice" in grants
    assert "客服问答" in grants
    object_page = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/permissions/")
    assert object_page.status_code == 200
    assert "alice" in object_page.content.decode()
    trail = admin_client.get("/admin/audit/auditentry/").content.decode()
    assert "permission.grant" in trail


@pytest.mark.django_db
def test_revoking_a_grant_from_the_list_is_audited(admin_client: Client, make_user: Any) -> None:
    bob = make_user("bob")
    workflow = Workflow.objects.create(name="日报")
    assign_perm("view_workflow", bob, workflow)
    from guardian.models import UserObjectPermission

    grant = UserObjectPermission.objects.get(user=bob)
    response = admin_client.post(
        f"/admin/guardian/userobjectpermission/{grant.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not bob.has_perm("workflows.view_workflow", workflow)
    revoke = AuditEntry.objects.filter(action="permission.revoke").latest("seq")
    assert revoke.extra == {"permission": "view_workflow", "user": "bob"}
    assert revoke.target_repr == "日报"
