"""Object permissions for the API: one permission class and one filter for every model.

A guarded model only declares its permissions (Django's default view/change/delete plus
``Meta.permissions`` such as ``publish_workflow``) and registers itself with
:func:`register_guarded`. Then:

* list endpoints use :class:`ViewableObjectsFilter` and show only what the user may view;
* detail endpoints use :class:`ObjectPermission`: an object the user may not view answers
  404 (its existence is not revealed), one they may view but not change answers 403;
* a view names a non-default action with ``object_action = "publish"``, and a create view
  sets ``model_action = "add"`` (a model-wide permission, typically from a role).

A model-wide permission (from a role) counts for every object; an object permission
(guardian, granted to a user or a group) counts for that object.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.http import Http404
from guardian.shortcuts import get_objects_for_user
from rest_framework.filters import BaseFilterBackend
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "change",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}

ModelT = TypeVar("ModelT", bound=type[models.Model])
InstanceT = TypeVar("InstanceT", bound=models.Model)

_guarded: dict[str, type[models.Model]] = {}


def register_guarded(model: ModelT) -> ModelT:
    """Class decorator: the model's objects can be shared through the sharing API."""
    _guarded[model._meta.label_lower] = model
    return model


def guarded_model(label: str) -> type[models.Model] | None:
    return _guarded.get(label.lower())


def object_actions(model: type[models.Model]) -> list[str]:
    """Actions that can be granted on one object: view, change, delete and custom ones."""
    suffix = f"_{model._meta.model_name}"
    defaults = [a for a in model._meta.default_permissions if a != "add"]
    custom = [codename.removesuffix(suffix) for codename, _name in model._meta.permissions]
    return defaults + [action for action in custom if action not in defaults]


def permission_name(model: type[models.Model], action: str) -> str:
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def user_actions(user: Any, obj: models.Model) -> list[str]:
    """Every action the user may do on ``obj`` (for APIs that tell a client what to offer)."""
    return [action for action in object_actions(type(obj)) if user_can(user, action, obj)]


def user_can(user: Any, action: str, obj: models.Model) -> bool:
    perm = permission_name(type(obj), action)
    return bool(user.has_perm(perm) or user.has_perm(perm, obj))


def permitted(
    user: Any, action: str, queryset: models.QuerySet[InstanceT]
) -> models.QuerySet[InstanceT]:
    """The objects of ``queryset`` on which the user may do ``action`` (view, use...)."""
    if not user.is_authenticated:
        # guardian would look up its "anonymous user" row, which we do not create.
        return queryset.none()
    objects: models.QuerySet[InstanceT] = get_objects_for_user(
        user, permission_name(queryset.model, action), queryset, accept_global_perms=True
    )
    return objects


def viewable(user: Any, queryset: models.QuerySet[InstanceT]) -> models.QuerySet[InstanceT]:
    return permitted(user, "view", queryset)


class ObjectPermission(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        model_action: str | None = getattr(view, "model_action", None)
        if model_action:
            model = view.get_queryset().model  # type: ignore[attr-defined]
            return bool(user.has_perm(permission_name(model, model_action)))
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if not user_can(request.user, "view", obj):
            raise Http404
        action = getattr(view, "object_action", None) or METHOD_ACTIONS.get(request.method or "")
        return action is not None and user_can(request.user, action, obj)


class ViewableObjectsFilter(BaseFilterBackend):
    def filter_queryset(self, request: Request, queryset: Any, view: APIView) -> Any:
        return viewable(request.user, queryset)
