"""Signal receivers that feed the audit trail: logins, roles, object permissions, models."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.http import HttpRequest
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit import registry
from audit.services import Actions, audit_record


def connect() -> None:
    user_model = get_user_model()
    registry.register(user_model, exclude=("last_login",), masked=("password",))
    registry.register(Group)
    user_logged_in.connect(_on_login, dispatch_uid="audit:login")
    user_logged_out.connect(_on_logout, dispatch_uid="audit:logout")
    user_login_failed.connect(_on_login_failed, dispatch_uid="audit:login_failed")
    user_locked_out.connect(_on_locked_out, dispatch_uid="audit:locked_out")
    m2m_changed.connect(
        _on_membership_change, sender=user_model.groups.through, dispatch_uid="audit:groups"
    )
    m2m_changed.connect(
        _on_group_permission_change,
        sender=Group.permissions.through,
        dispatch_uid="audit:group_perms",
    )
    for model in (UserObjectPermission, GroupObjectPermission):
        post_save.connect(_on_object_permission_saved, sender=model, dispatch_uid=f"audit:{model}")
        post_delete.connect(
            _on_object_permission_deleted, sender=model, dispatch_uid=f"audit:{model}:del"
        )


def _on_login(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kw: Any) -> None:
    audit_record(action=Actions.LOGIN, target=user, actor=user)


def _on_logout(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser | None, **kw: Any
) -> None:
    audit_record(action=Actions.LOGOUT, target=user, actor=user)


def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any
) -> None:
    # Django already replaced the password in `credentials` with a mask; keep the username.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action=Actions.LOGIN_FAILED,
        target_type=get_user_model()._meta.label_lower,
        target_repr=username,
        extra={"attempted_username": username},
    )


def _on_locked_out(
    sender: Any, request: HttpRequest | None, username: str, ip_address: str, **kw: Any
) -> None:
    audit_record(
        action=Actions.LOCKED_OUT,
        target_type=get_user_model()._meta.label_lower,
        target_repr=str(username)[:150],
        extra={"attempted_username": username, "ip_address": ip_address},
    )


def _on_membership_change(
    sender: Any,
    *,
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    **kw: Any,
) -> None:
    if action == "pre_clear":
        related = instance.user_set if reverse else instance.groups  # type: ignore[attr-defined]
        pk_set = set(related.values_list("pk", flat=True))
        action = "post_remove"
    if action not in {"post_add", "post_remove"} or not pk_set:
        return
    verb = Actions.GROUP_MEMBER_ADD if action == "post_add" else Actions.GROUP_MEMBER_REMOVE
    for other in model._default_manager.filter(pk__in=pk_set):
        user, group = (other, instance) if reverse else (instance, other)
        audit_record(action=verb, target=group, extra={"user": str(user), "group": str(group)})


def _on_group_permission_change(
    sender: Any,
    *,
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    **kw: Any,
) -> None:
    if action == "pre_clear":
        # clear() names no permissions: record each one still held as a removal.
        related = instance.group_set if reverse else instance.permissions  # type: ignore[attr-defined]
        pk_set = set(related.values_list("pk", flat=True))
        action = "post_remove"
    if action not in {"post_add", "post_remove"} or not pk_set:
        return
    verb = Actions.GROUP_PERMISSION_ADD if action == "post_add" else Actions.GROUP_PERMISSION_REMOVE
    for other in model._default_manager.filter(pk__in=pk_set):
        group, permission = (other, instance) if reverse else (instance, other)
        if not isinstance(permission, Permission):
            continue
        audit_record(
            action=verb,
            target=group,
            extra={"permission": f"{permission.content_type.app_label}.{permission.codename}"},
        )


def _object_permission_details(
    grant: UserObjectPermission | GroupObjectPermission,
) -> dict[str, Any]:
    holder = (
        {"user": grant.user.get_username()}
        if isinstance(grant, UserObjectPermission)
        else {"group": grant.group.name}
    )
    return {"permission": grant.permission.codename, **holder}


def _record_object_permission(
    action: str, grant: UserObjectPermission | GroupObjectPermission
) -> None:
    target = grant.content_object
    audit_record(
        action=action,
        target_type=f"{grant.content_type.app_label}.{grant.content_type.model}",
        target_id=str(grant.object_pk),
        target_repr=str(target) if target is not None else "",
        extra=_object_permission_details(grant),
    )


def _on_object_permission_saved(
    sender: Any, instance: UserObjectPermission | GroupObjectPermission, created: bool, **kw: Any
) -> None:
    if created and not kw.get("raw"):
        _record_object_permission(Actions.PERMISSION_GRANT, instance)


def _on_object_permission_deleted(
    sender: Any, instance: UserObjectPermission | GroupObjectPermission, **kw: Any
) -> None:
    _record_object_permission(Actions.PERMISSION_REVOKE, instance)
