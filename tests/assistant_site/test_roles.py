from __future__ import annotations

import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError

from assistant_site.roles import (
    ADMINISTRATOR,
    AUDITOR,
    CURATOR,
    DESIGNER,
    OPERATOR,
    ROLES,
    ROLES_BY_NAME,
    VIEWER,
    roles_sync,
    user_roles_set,
)
from audit.models import AuditEntry

ROLE_NAMES = [role.name for role in ROLES]


def _role_permissions() -> dict[str, set[str]]:
    """Each role group's permissions as "app_label.codename"."""
    return {
        group.name: {
            f"{app_label}.{codename}"
            for app_label, codename in group.permissions.values_list(
                "content_type__app_label", "codename"
            )
        }
        for group in Group.objects.filter(name__in=ROLE_NAMES)
    }


def _table_permissions(name: str) -> set[str]:
    """What the ROLES table asks for, limited to permissions that exist in the database."""
    role = ROLES_BY_NAME[name]
    existing = {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list(
            "content_type__app_label", "codename"
        )
    }
    wanted = set(role.permissions) & existing
    wanted |= {p for p in existing if p.partition(".")[0] in role.all_permissions_of}
    return wanted


@pytest.mark.django_db
def test_every_role_exists_with_exactly_the_permissions_of_the_table() -> None:
    roles_sync()
    permissions = _role_permissions()
    assert sorted(permissions) == sorted(ROLE_NAMES)
    for name in ROLE_NAMES:
        assert permissions[name] == _table_permissions(name), name


@pytest.mark.django_db
def test_roles_carry_the_documented_powers() -> None:
    roles_sync()
    permissions = _role_permissions()
    administrator = permissions[ADMINISTRATOR]
    # Every permission of the feature apps, custom ones included.
    assert {
        "workflows.publish_workflow",
        "workflows.add_modelendpoint",
        "knowledge.manage_documents_knowledgebase",
        "guardian.change_userobjectpermission",
        "auth.change_user",
        "audit.view_auditentry",
    } <= administrator
    # Administrators read the trail but exporting it is the auditors' job.
    assert "audit.export_auditentry" not in administrator
    assert permissions[AUDITOR] == {"audit.view_auditentry", "audit.export_auditentry"}
    assert permissions[CURATOR] == {"knowledge.add_knowledgebase"}
    assert permissions[VIEWER] == {"workflows.view_workflow", "knowledge.view_knowledgebase"}
    assert "workflows.change_workflow" not in permissions[DESIGNER]
    assert "workflows.add_workflow" in permissions[DESIGNER]
    assert "workflows.run_workflow" in permissions[OPERATOR]
    assert "workflows.change_workflow" not in permissions[OPERATOR]


@pytest.mark.django_db
def test_syncing_twice_changes_nothing_and_writes_no_audit_entries() -> None:
    call_command("create_roles", stdout=StringIO())
    groups_before = list(Group.objects.order_by("pk").values_list("pk", "name"))
    permissions_before = _role_permissions()
    audit_before = AuditEntry.objects.count()

    out = StringIO()
    call_command("create_roles", stdout=out)
    roles_sync()

    assert list(Group.objects.order_by("pk").values_list("pk", "name")) == groups_before
    assert _role_permissions() == permissions_before
    assert AuditEntry.objects.count() == audit_before
    assert "roles up to date" in out.getvalue()
    for name in ROLE_NAMES:
        assert name in out.getvalue()


@pytest.mark.django_db
def test_a_permission_removed_by_hand_is_restored() -> None:
    roles_sync()
    designer = Group.objects.get(name=DESIGNER)
    permission = Permission.objects.get(
        content_type__app_label="workflows", codename="add_workflow"
    )
    designer.permissions.remove(permission)
    assert "workflows.add_workflow" not in _role_permissions()[DESIGNER]

    call_command("create_roles", stdout=StringIO())

    assert "workflows.add_workflow" in _role_permissions()[DESIGNER]


@pytest.mark.django_db
def test_a_permission_added_by_hand_is_taken_away() -> None:
    roles_sync()
    viewer = Group.objects.get(name=VIEWER)
    viewer.permissions.add(
        Permission.objects.get(content_type__app_label="workflows", codename="delete_workflow")
    )

    call_command("create_roles", stdout=StringIO())

    assert _role_permissions()[VIEWER] == _table_permissions(VIEWER)
    assert "workflows.delete_workflow" not in _role_permissions()[VIEWER]


@pytest.mark.django_db
def test_a_deleted_role_group_is_recreated() -> None:
    Group.objects.filter(name=AUDITOR).delete()

    call_command("create_roles", stdout=StringIO())

    assert _role_permissions()[AUDITOR] == _table_permissions(AUDITOR)


EXPECTED_STAFF = {
    ADMINISTRATOR: True,
    DESIGNER: False,
    OPERATOR: True,
    CURATOR: True,
    AUDITOR: True,
    VIEWER: False,
}


def test_expected_staff_flags_cover_every_role() -> None:
    assert sorted(EXPECTED_STAFF) == sorted(ROLE_NAMES)


@pytest.mark.parametrize(("role", "staff"), sorted(EXPECTED_STAFF.items()))
def test_role_decides_admin_access(make_user: Callable[..., Any], role: str, staff: bool) -> None:
    user = make_user("someone")

    user_roles_set(user=user, roles=[role])

    user.refresh_from_db()
    assert user.is_staff is staff
    assert list(user.groups.values_list("name", flat=True)) == [role]


def test_changing_roles_replaces_them_and_updates_staff(make_user: Callable[..., Any]) -> None:
    user = make_user("someone", roles=(AUDITOR,))
    assert user.is_staff

    user_roles_set(user=user, roles=[VIEWER])

    user.refresh_from_db()
    assert not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == [VIEWER]


def test_one_staff_role_among_several_gives_admin_access(make_user: Callable[..., Any]) -> None:
    user = make_user("someone")

    user_roles_set(user=user, roles=[DESIGNER, CURATOR])

    user.refresh_from_db()
    assert user.is_staff
    assert sorted(user.groups.values_list("name", flat=True)) == [CURATOR, DESIGNER]


def test_removing_every_role_keeps_team_groups(make_user: Callable[..., Any]) -> None:
    team = Group.objects.create(name="Team Blue")
    user = make_user("someone", roles=(OPERATOR,))
    user.groups.add(team)

    user_roles_set(user=user, roles=[])

    user.refresh_from_db()
    assert not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["Team Blue"]


def test_superuser_keeps_admin_access_with_a_non_staff_role(
    make_user: Callable[..., Any],
) -> None:
    user = make_user("root", is_superuser=True, is_staff=True)

    user_roles_set(user=user, roles=[VIEWER])

    user.refresh_from_db()
    assert user.is_staff


def test_unknown_role_is_refused_and_changes_nothing(make_user: Callable[..., Any]) -> None:
    user = make_user("someone", roles=(DESIGNER,))

    with pytest.raises(ValueError, match="unknown role\\(s\\): Wizard"):
        user_roles_set(user=user, roles=[VIEWER, "Wizard"])

    assert list(user.groups.values_list("name", flat=True)) == [DESIGNER]


def test_assign_role_command_sets_roles(make_user: Callable[..., Any]) -> None:
    make_user("alice")
    out = StringIO()

    call_command("assign_role", "alice", CURATOR, AUDITOR, stdout=out)

    alice = get_user_model().objects.get(username="alice")
    assert alice.is_staff
    assert sorted(alice.groups.values_list("name", flat=True)) == [AUDITOR, CURATOR]
    assert out.getvalue().strip() == f"alice: {CURATOR}, {AUDITOR}"


def test_assign_role_command_refuses_an_unknown_role(make_user: Callable[..., Any]) -> None:
    make_user("alice", roles=(VIEWER,))

    with pytest.raises(CommandError, match="unknown role\\(s\\): Wizard"):
        call_command("assign_role", "alice", "Wizard", stdout=StringIO())

    alice = get_user_model().objects.get(username="alice")
    assert list(alice.groups.values_list("name", flat=True)) == [VIEWER]


@pytest.mark.django_db
def test_assign_role_command_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user is named 'ghost'"):
        call_command("assign_role", "ghost", VIEWER, stdout=StringIO())


@pytest.mark.django_db
def test_ensure_admin_creates_one_administrator_and_prints_its_password_once() -> None:
    first = StringIO()
    call_command("ensure_admin", stdout=first)

    match = re.search(r"password: (\S+)", first.getvalue())
    assert match is not None, first.getvalue()
    password = match.group(1)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    assert admin.check_password(password)
    assert list(admin.groups.values_list("name", flat=True)) == [ADMINISTRATOR]

    second = StringIO()
    call_command("ensure_admin", "--username", "another", stdout=second)

    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert not get_user_model().objects.filter(username="another").exists()
    assert password not in second.getvalue()
    assert "exists already" in second.getvalue()
    admin.refresh_from_db()
    assert admin.check_password(password)


@pytest.mark.django_db
def test_ensure_admin_does_nothing_when_a_superuser_exists() -> None:
    get_user_model().objects.create_superuser(username="root", password="x" * 20)
    out = StringIO()

    call_command("ensure_admin", stdout=out)

    assert list(get_user_model().objects.values_list("username", flat=True)) == ["root"]
    assert "password:" not in out.getvalue()
