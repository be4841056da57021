"""Roles are Django groups holding model-wide permissions; object grants come on top.

docs/roles.md describes this table for people; tests/test_docs.py checks the two agree.
A permission whose model does not exist yet is skipped, so
later apps extend a role by adding to this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    staff: bool  # may log in to the Django admin
    permissions: tuple[str, ...]  # "app_label.codename", model-wide
    all_permissions_of: tuple[str, ...] = ()  # app labels whose every permission it holds


ADMINISTRATOR = "Administrator"
DESIGNER = "Designer"
OPERATOR = "Operator"
CURATOR = "Curator"
AUDITOR = "Auditor"
VIEWER = "Viewer"

ROLES: tuple[Role, ...] = (
    Role(
        ADMINISTRATOR,
        str(_("Manages users, roles, sharing, model endpoints, connectors and every object.")),
        staff=True,
        permissions=(
            "auth.add_user",
            "auth.change_user",
            "auth.view_user",
            "auth.delete_user",
            "auth.add_group",
            "auth.change_group",
            "auth.view_group",
            "auth.view_permission",
            "audit.view_auditentry",
            "axes.view_accessattempt",
            "axes.delete_accessattempt",
            "axes.view_accesslog",
            "axes.view_accessfailurelog",
        ),
        all_permissions_of=(
            "workflows",
            "connectors",
            "knowledge",
            "guardian",
            "django_celery_beat",
        ),
    ),
    Role(
        DESIGNER,
        str(
            _(
                "Creates workflows and edits, publishes and runs the ones shared with them; "
                "uses model endpoints and knowledge bases in nodes."
            )
        ),
        staff=False,
        permissions=(
            "workflows.add_workflow",
            "workflows.add_credential",
            "workflows.view_modelendpoint",
            "workflows.use_modelendpoint",
            "knowledge.view_knowledgebase",
        ),
    ),
    Role(
        OPERATOR,
        str(
            _(
                "Watches runs and failures, runs any workflow, probes model endpoints and "
                "manages connectors and schedules."
            )
        ),
        staff=True,
        permissions=(
            "workflows.view_workflow",
            "workflows.run_workflow",
            "workflows.view_modelendpoint",
            "connectors.view_connector",
            "connectors.change_connector",
            "connectors.use_connector",
            "django_celery_beat.view_periodictask",
            "django_celery_beat.change_periodictask",
        ),
    ),
    Role(
        CURATOR,
        str(_("Creates knowledge bases and manages the documents of the ones shared with them.")),
        staff=True,
        permissions=("knowledge.add_knowledgebase",),
    ),
    Role(
        AUDITOR,
        str(_("Reads and exports the audit trail; changes nothing.")),
        staff=True,
        permissions=("audit.view_auditentry", "audit.export_auditentry"),
    ),
    Role(
        VIEWER,
        str(_("Looks at every workflow and knowledge base; changes nothing.")),
        staff=False,
        permissions=("workflows.view_workflow", "knowledge.view_knowledgebase"),
    ),
)
ROLES_BY_NAME = {role.name: role for role in ROLES}


def _permission_filter(role: Role) -> Q:
    query = Q(pk__in=[])
    for label in role.permissions:
        app_label, _sep, codename = label.partition(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    if role.all_permissions_of:
        query |= Q(content_type__app_label__in=role.all_permissions_of)
    return query


def roles_sync(using: str = "default") -> None:
    """Create every role and set its permissions to exactly the table's. Idempotent."""
    with transaction.atomic(using=using):
        for role in ROLES:
            group, _created = Group.objects.using(using).get_or_create(name=role.name)
            wanted = set(
                Permission.objects.using(using)
                .filter(_permission_filter(role))
                .values_list("pk", flat=True)
            )
            current = set(group.permissions.values_list("pk", flat=True))
            if wanted - current:
                group.permissions.add(*(wanted - current))
            if current - wanted:
                group.permissions.remove(*(current - wanted))


def user_roles_set(*, user: Any, roles: list[str]) -> None:
    """Make `roles` the user's roles; admin access follows the roles' staff flag."""
    unknown = sorted(set(roles) - set(ROLES_BY_NAME))
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(unknown)}")
    with transaction.atomic():
        # Other groups (teams used for sharing) are left as they are.
        role_groups = Group.objects.filter(name__in=list(ROLES_BY_NAME))
        memberships = user.groups
        memberships.remove(*role_groups.exclude(name__in=roles))
        memberships.add(*role_groups.filter(name__in=roles))
        staff = any(ROLES_BY_NAME[name].staff for name in roles)
        if user.is_staff != staff and not user.is_superuser:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
