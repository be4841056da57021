"""The audit trail in the admin: read-only for everyone, filterable, exportable by auditors."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.admin.filters import DateFieldListFilter
from django.test import Client
from django.utils import timezone

from assistant_site.roles import ADMINISTRATOR, AUDITOR, DESIGNER, OPERATOR, VIEWER
from audit.models import AuditEntry
from audit.services import audit_record

LIST_URL = "/admin/audit/auditentry/"
EXPORT_URL = "/admin/audit/auditentry/export.csv"
MARCH_FIRST = dt.datetime(2025, 3, 1, 10, 30, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Trail:
    alice_login: AuditEntry
    bob_create: AuditEntry
    failed_login: AuditEntry
    old_delete: AuditEntry


@pytest.fixture
def trail(make_user: Callable[..., Any]) -> Trail:
    alice, bob = make_user("alice"), make_user("bob")
    alice_login = audit_record(action="auth.login", target=alice, actor=alice)
    bob_create = audit_record(
        action="object.create",
        target_type="workflows.workflow",
        target_id="7",
        target_repr="Ticket triage",
        changes={"name": [None, "Ticket triage"]},
        actor=bob,
    )
    failed_login = audit_record(
        action="auth.login_failed",
        target_type="auth.user",
        target_repr="mallory",
        extra={"attempted_username": "mallory"},
    )
    # An entry from last year, as an older part of the trail would hold.
    old_delete = AuditEntry.objects.create(
        seq=failed_login.seq + 1,
        created_at=MARCH_FIRST,
        action="object.delete",
        actor_id=alice.pk,
        actor_username="alice",
        target_type="workflows.modelendpoint",
        target_id="3",
        target_repr="old-endpoint",
        prev_hash=failed_login.entry_hash,
        entry_hash="0" * 64,
    )
    return Trail(alice_login, bob_create, failed_login, old_delete)


@pytest.fixture
def auditor_client(client: Client, make_user: Callable[..., Any]) -> Client:
    client.force_login(make_user("audrey", roles=(AUDITOR,)))
    return client


def _listed(client: Client, query: str = "") -> list[AuditEntry]:
    response = client.get(f"{LIST_URL}?{query}" if query else LIST_URL)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def _export(client: Client, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"{EXPORT_URL}?{query}" if query else EXPORT_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    return list(csv.DictReader(StringIO(response.getvalue().decode())))


# --- read-only --------------------------------------------------------------------------------


def test_superuser_sees_an_entry_without_any_way_to_save_it(
    admin_client: Client, trail: Trail
) -> None:
    entry = trail.bob_create
    response = admin_client.get(f"{LIST_URL}{entry.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ticket triage" in content
    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert 'name="_addanother"' not in content
    assert f"{LIST_URL}{entry.pk}/delete/" not in content


def test_superuser_cannot_change_an_entry(admin_client: Client, trail: Trail) -> None:
    entry = trail.bob_create
    response = admin_client.post(
        f"{LIST_URL}{entry.pk}/change/",
        {"action": "auth.login", "target_repr": "nothing happened", "_save": "Save"},
    )
    assert response.status_code == 403
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.action, stored.target_repr) == ("object.create", "Ticket triage")


def test_superuser_cannot_add_an_entry(admin_client: Client, trail: Trail) -> None:
    count = AuditEntry.objects.count()
    assert admin_client.get(f"{LIST_URL}add/").status_code == 403
    response = admin_client.post(
        f"{LIST_URL}add/", {"seq": "1", "action": "auth.login", "_save": "Save"}
    )
    assert response.status_code == 403
    assert AuditEntry.objects.count() == count


def test_superuser_cannot_delete_an_entry(admin_client: Client, trail: Trail) -> None:
    entry = trail.bob_create
    assert admin_client.get(f"{LIST_URL}{entry.pk}/delete/").status_code == 403
    assert admin_client.post(f"{LIST_URL}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_changelist_offers_no_bulk_delete(admin_client: Client, trail: Trail) -> None:
    response = admin_client.get(LIST_URL)
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    assert 'href="/admin/audit/auditentry/add/"' not in response.content.decode()

    count = AuditEntry.objects.count()
    admin_client.post(
        LIST_URL,
        {"action": "delete_selected", "_selected_action": [trail.bob_create.pk], "post": "yes"},
    )
    assert AuditEntry.objects.count() == count


# --- filters ------------------------------------------------------------------------------------


def test_changelist_filters_by_action(auditor_client: Client, trail: Trail) -> None:
    listed = _listed(auditor_client, "action=auth.login")
    assert trail.alice_login in listed
    assert {entry.action for entry in listed} == {"auth.login"}


def test_changelist_filters_by_actor(auditor_client: Client, trail: Trail) -> None:
    listed = _listed(auditor_client, "actor_username=alice")
    assert set(listed) == {trail.alice_login, trail.old_delete}


def test_changelist_filters_by_target_type(auditor_client: Client, trail: Trail) -> None:
    listed = _listed(auditor_client, "target_type=workflows.workflow")
    assert trail.bob_create in listed
    assert {entry.target_type for entry in listed} == {"workflows.workflow"}


def test_changelist_filters_by_date(auditor_client: Client, trail: Trail) -> None:
    # Follow the sidebar's own "Today" link, as a person clicking it would.
    response = auditor_client.get(LIST_URL)
    changelist = response.context["cl"]
    date_filter = next(f for f in changelist.filter_specs if isinstance(f, DateFieldListFilter))
    today_link = next(c for c in date_filter.choices(changelist) if c["display"] == "Today")
    listed = _listed(auditor_client, today_link["query_string"].lstrip("?"))
    assert {trail.alice_login, trail.bob_create, trail.failed_login} <= set(listed)
    assert trail.old_delete not in listed
    assert all(timezone.localdate(entry.created_at) == timezone.localdate() for entry in listed)

    since = MARCH_FIRST.replace(hour=0, minute=0)
    query = urlencode(
        {"created_at__gte": str(since), "created_at__lt": str(since + dt.timedelta(1))}
    )
    assert _listed(auditor_client, query) == [trail.old_delete]

    # The date hierarchy above the list drills down the same way.
    assert _listed(auditor_client, "created_at__year=2025&created_at__month=3") == [
        trail.old_delete
    ]


# --- who may see and export -------------------------------------------------------------------


def test_auditor_sees_the_trail_and_an_export_link(auditor_client: Client, trail: Trail) -> None:
    response = auditor_client.get(LIST_URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ticket triage" in content
    assert "mallory" in content
    assert f'href="{EXPORT_URL}?"' in content


def test_auditor_can_export_the_trail_as_csv(auditor_client: Client, trail: Trail) -> None:
    rows = _export(auditor_client)
    assert list(rows[0]) == [
        "seq",
        "created_at",
        "action",
        "actor_username",
        "actor_id",
        "target_type",
        "target_id",
        "target_repr",
        "changes",
        "extra",
        "source",
        "request_id",
        "ip",
        "user_agent",
        "prev_hash",
        "entry_hash",
    ]
    by_seq = {int(row["seq"]): row for row in rows}
    created = by_seq[trail.bob_create.seq]
    assert created["action"] == "object.create"
    assert created["actor_username"] == "bob"
    assert created["target_repr"] == "Ticket triage"
    assert created["changes"] == '{"name": [null, "Ticket triage"]}'
    assert created["entry_hash"] == trail.bob_create.entry_hash
    assert [int(row["seq"]) for row in rows] == sorted(by_seq)


def test_export_holds_exactly_the_rows_its_audit_entry_reports(
    auditor_client: Client, trail: Trail
) -> None:
    rows = _export(auditor_client)
    export_entry = AuditEntry.objects.filter(action="audit.export").latest("seq")
    assert export_entry.extra == {"filters": {}, "rows": len(rows)}


@pytest.mark.parametrize("role", [DESIGNER, VIEWER])
def test_users_outside_the_admin_are_sent_to_the_login_page(
    client: Client, make_user: Callable[..., Any], trail: Trail, role: str
) -> None:
    client.force_login(make_user("dana", roles=(role,)))
    for url in (LIST_URL, EXPORT_URL):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not AuditEntry.objects.filter(action="audit.export").exists()


def test_staff_without_audit_permissions_are_refused(
    client: Client, make_user: Callable[..., Any], trail: Trail
) -> None:
    client.force_login(make_user("otto", roles=(OPERATOR,)))
    assert client.get(LIST_URL).status_code == 403
    assert client.get(EXPORT_URL).status_code == 403
    assert client.get(f"{LIST_URL}{trail.bob_create.pk}/change/").status_code == 403
    assert not AuditEntry.objects.filter(action="audit.export").exists()


def test_administrator_reads_the_trail_but_cannot_export_it(
    client: Client, make_user: Callable[..., Any], trail: Trail
) -> None:
    client.force_login(make_user("ada", roles=(ADMINISTRATOR,)))
    response = client.get(LIST_URL)
    assert response.status_code == 200
    assert EXPORT_URL not in response.content.decode()
    assert client.get(EXPORT_URL).status_code == 403
    assert not AuditEntry.objects.filter(action="audit.export").exists()


# --- export contents ----------------------------------------------------------------------------


def test_export_link_carries_the_changelist_filters(auditor_client: Client, trail: Trail) -> None:
    response = auditor_client.get(f"{LIST_URL}?action=auth.login&actor_username=alice")
    assert f'href="{EXPORT_URL}?action=auth.login&amp;actor_username=alice"' in (
        response.content.decode()
    )


def test_export_honours_the_changelist_filters(auditor_client: Client, trail: Trail) -> None:
    rows = _export(auditor_client, "action=auth.login&actor_username=alice")
    assert [int(row["seq"]) for row in rows] == [trail.alice_login.seq]

    rows = _export(auditor_client, "actor_username=alice")
    assert [int(row["seq"]) for row in rows] == sorted(
        [trail.alice_login.seq, trail.old_delete.seq]
    )

    rows = _export(auditor_client, "created_at__year=2025")
    assert [row["target_repr"] for row in rows] == ["old-endpoint"]

    rows = _export(auditor_client, "q=mallory")
    assert [int(row["seq"]) for row in rows] == [trail.failed_login.seq]


def test_export_neutralises_cells_that_a_spreadsheet_would_run(
    auditor_client: Client, trail: Trail
) -> None:
    formulas = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1:A9)"]
    for formula in formulas:
        audit_record(
            action="sensitive.access", target_type="workflows.workflow", target_repr=formula
        )
    audit_record(
        action="sensitive.access", target_type="workflows.workflow", target_repr="Ticket triage"
    )
    # A visitor chooses the username and browser string that a failed login records.
    anonymous = Client()
    anonymous.post(
        "/admin/login/",
        {"username": "=cmd|' /C calc'!A0", "password": "wrong-password"},
        HTTP_USER_AGENT="@evil-agent",
    )

    rows = _export(auditor_client, "action=sensitive.access")
    assert [row["target_repr"] for row in rows] == ["'" + formula for formula in formulas] + [
        "Ticket triage"
    ]

    (failed,) = _export(auditor_client, "action=auth.login_failed&q=calc")
    assert failed["target_repr"] == "'=cmd|' /C calc'!A0"
    assert failed["user_agent"] == "'@evil-agent"
    # JSON cells start with "{", which no spreadsheet runs; their content stays exact.
    assert failed["extra"] == '{"attempted_username": "=cmd|\' /C calc\'!A0"}'
