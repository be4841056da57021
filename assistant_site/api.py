"""Site-wide API pieces: the error format and the sharing endpoints."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from assistant_site.permissions import guarded_model, object_actions, user_can, viewable
from assistant_site.sharing import (
    SharingError,
    object_grants,
    object_permission_grant,
    object_permission_revoke,
)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every error body a JSON object (lists become {"detail": ...})."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        response.data = {"detail": response.data}
    return response


class _SharedObjectMixin:
    def shared_object(self, request: Request, label: str, pk: str, action: str) -> models.Model:
        model = guarded_model(label)
        if model is None:
            raise Http404
        try:
            obj = viewable(request.user, model._default_manager.all()).get(pk=pk)
        except (ObjectDoesNotExist, ValueError, TypeError, DjangoValidationError):
            # A malformed id is as unknown as a missing one.
            raise Http404 from None
        if not user_can(request.user, action, obj):
            self.permission_denied(request, message=f"you may not {action} this object")  # type: ignore[attr-defined]
        return obj


class GrantsOutputSerializer(serializers.Serializer[Any]):
    users = serializers.ListField(child=serializers.DictField())
    groups = serializers.ListField(child=serializers.DictField())


class GrantInputSerializer(serializers.Serializer[Any]):
    permission = serializers.CharField(help_text="view, change, delete or a custom action")
    user = serializers.CharField(required=False, allow_blank=False)
    group = serializers.CharField(required=False, allow_blank=False)


class ObjectGrantsApi(_SharedObjectMixin, APIView):
    """Who holds which permission on one object (users and groups); needs change on it."""

    @extend_schema(responses=GrantsOutputSerializer)
    def get(self, request: Request, label: str, pk: str) -> Response:
        obj = self.shared_object(request, label, pk, "change")
        return Response(object_grants(obj))


class _GrantChangeApi(_SharedObjectMixin, APIView):
    def change(self, request: Request, label: str, pk: str) -> Response:
        obj = self.shared_object(request, label, pk, "change")
        payload = GrantInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if data["permission"] in object_actions(type(obj)) and not user_can(
            request.user, data["permission"], obj
        ):
            # Sharing can pass on only what the caller holds: no escalation through grants.
            self.permission_denied(
                request, message=f"you cannot share {data['permission']!r}: you do not hold it"
            )
        try:
            self.apply(
                obj=obj, action=data["permission"], user=data.get("user"), group=data.get("group")
            )
        except SharingError as exc:
            raise ValidationError({exc.field: [exc.message]}) from exc
        return Response(object_grants(obj))

    def apply(self, **kwargs: Any) -> None:
        raise NotImplementedError


class ObjectPermissionGrantApi(_GrantChangeApi):
    """Grant one object permission to a user or a group; needs change on the object."""

    @extend_schema(request=GrantInputSerializer, responses=GrantsOutputSerializer)
    def post(self, request: Request, label: str, pk: str) -> Response:
        return self.change(request, label, pk)

    def apply(self, **kwargs: Any) -> None:
        object_permission_grant(**kwargs)


class ObjectPermissionRevokeApi(_GrantChangeApi):
    """Revoke one object permission from a user or a group; needs change on the object."""

    @extend_schema(request=GrantInputSerializer, responses=GrantsOutputSerializer)
    def post(self, request: Request, label: str, pk: str) -> Response:
        return self.change(request, label, pk)

    def apply(self, **kwargs: Any) -> None:
        object_permission_revoke(**kwargs)
