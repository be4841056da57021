"""Granting and revoking object permissions to users and groups (audited by the receivers)."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models, transaction
from guardian.shortcuts import assign_perm, get_groups_with_perms, get_users_with_perms, remove_perm

from assistant_site.permissions import object_actions


class SharingError(Exception):
    """Bad sharing input; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _holder(user: str | None, group: str | None) -> Any:
    if bool(user) == bool(group):
        raise SharingError("user", "give exactly one of `user` (a username) or `group` (a name)")
    if user:
        try:
            return get_user_model()._default_manager.get_by_natural_key(user)
        except get_user_model().DoesNotExist:
            raise SharingError("user", f"no user is named {user!r}") from None
    try:
        return Group.objects.get(name=group)
    except Group.DoesNotExist:
        raise SharingError("group", f"no group is named {group!r}") from None


def _codename(obj: models.Model, action: str) -> str:
    actions = object_actions(type(obj))
    if action not in actions:
        raise SharingError(
            "permission",
            f"{action!r} is not a permission of {obj._meta.model_name}; "
            f"choose from {', '.join(actions)}",
        )
    return f"{action}_{obj._meta.model_name}"


def object_grants(obj: models.Model) -> dict[str, list[dict[str, Any]]]:
    suffix = f"_{obj._meta.model_name}"
    users = cast(
        dict[Any, list[str]],
        get_users_with_perms(obj, attach_perms=True, with_group_users=False),
    )
    groups = cast(dict[Group, list[str]], get_groups_with_perms(obj, attach_perms=True))
    return {
        "users": [
            {"user": u.get_username(), "permissions": sorted(p.removesuffix(suffix) for p in perms)}
            for u, perms in sorted(users.items(), key=lambda item: item[0].get_username())
        ],
        "groups": [
            {"group": g.name, "permissions": sorted(p.removesuffix(suffix) for p in perms)}
            for g, perms in sorted(groups.items(), key=lambda item: item[0].name)
        ],
    }


def object_permission_grant(
    *, obj: models.Model, action: str, user: str | None = None, group: str | None = None
) -> None:
    codename = _codename(obj, action)
    holder = _holder(user, group)
    with transaction.atomic():
        assign_perm(codename, holder, obj)


def object_permission_revoke(
    *, obj: models.Model, action: str, user: str | None = None, group: str | None = None
) -> None:
    codename = _codename(obj, action)
    holder = _holder(user, group)
    with transaction.atomic():
        remove_perm(codename, holder, obj)


def owner_permissions_grant(*, user: Any, obj: models.Model) -> None:
    """The creator of an object gets every object permission on it."""
    for action in object_actions(type(obj)):
        assign_perm(f"{action}_{obj._meta.model_name}", user, obj)
