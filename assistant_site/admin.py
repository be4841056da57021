"""Admin base class for guarded models: object permissions, secrets kept secret.

``GuardedAdmin`` lets staff see and edit the objects their object permissions cover (Django's
admin alone checks only model-wide permissions), adds guardian's "Object permissions" page
(for holders of guardian's own permissions, i.e. administrators), and turns every encrypted
field into a write-only input plus an audited "Reveal" page.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from guardian.admin import ReinforcedGuardedModelAdminMixin
from guardian.models import GroupObjectPermission, UserObjectPermission

from assistant_site.crypto import EncryptedTextField, SecretDecryptionError, is_set
from assistant_site.permissions import permission_name, user_can, viewable
from assistant_site.sharing import owner_permissions_grant
from audit.services import Actions, audit_record

ModelT = TypeVar("ModelT", bound=models.Model)
_CLEAR_SUFFIX = "__clear"


class GuardedAdmin(ReinforcedGuardedModelAdminMixin, admin.ModelAdmin[ModelT]):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Adds guardian's "Object permissions" button to the change form.
        self.change_form_template = "admin/guardian/model/change_form.html"

    # --- object permissions ------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelT]:
        return viewable(request.user, super().get_queryset(request))  # type: ignore[no-untyped-call]

    def _may(self, request: HttpRequest, action: str, obj: ModelT | None) -> bool:
        if not request.user.is_active or not request.user.is_authenticated:
            return False
        if obj is not None:
            return user_can(request.user, action, obj)
        if request.user.has_perm(permission_name(self.model, action)):
            return True
        # Some object grant of this kind is enough to open the list.
        from guardian.shortcuts import get_objects_for_user

        return bool(
            get_objects_for_user(
                request.user, permission_name(self.model, action), self.model, with_superuser=True
            ).exists()
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "view", obj) or self._may(request, "change", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may(request, "delete", obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) or self.has_add_permission(request)

    # --- secrets -------------------------------------------------------------------------
    def _field_label(self, name: str) -> str:
        return str(next(f for f in self.model._meta.concrete_fields if f.name == name).verbose_name)

    def _secret_fields(self) -> list[str]:
        return [
            f.name for f in self.model._meta.concrete_fields if isinstance(f, EncryptedTextField)
        ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, EncryptedTextField):
            return forms.CharField(
                label=db_field.verbose_name,
                required=False,
                strip=True,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text=_("Stored encrypted. Leave empty to keep the current value."),
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        extra = ("secret_status",) if self._secret_fields() and obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *extra)

    @admin.display(description=gettext_lazy("Stored secrets"))
    def secret_status(self, obj: ModelT) -> str:
        parts = []
        for name in self._secret_fields():
            label = self._field_label(name)
            if is_set(getattr(obj, name)):
                url = reverse(
                    f"admin:{self.model._meta.app_label}_{self.model._meta.model_name}_reveal",
                    args=[obj.pk, name],
                )
                parts.append(
                    format_html('{}: {} — <a href="{}">{}</a>', label, _("set"), url, _("Reveal"))
                )
            else:
                parts.append(format_html("{}: {}", label, _("not set")))
        return format_html("<br>".join(["{}"] * len(parts)), *parts)

    def save_model(self, request: HttpRequest, obj: ModelT, form: Any, change: bool) -> None:
        if change:
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            for name in self._secret_fields():
                if form.cleaned_data.get(name) in ("", None) and stored is not None:
                    # An empty password input means "unchanged", not "remove".
                    setattr(obj, name, getattr(stored, name))
        elif any(f.name == "created_by" for f in self.model._meta.concrete_fields):
            obj.created_by = request.user  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)
        if not change:
            owner_permissions_grant(user=request.user, obj=obj)

    def get_urls(self) -> list[URLPattern]:
        info = (self.model._meta.app_label, self.model._meta.model_name)
        reveal = path(
            "<path:object_id>/reveal/<str:field_name>/",
            self.admin_site.admin_view(self.reveal_secret_view),
            name="{}_{}_reveal".format(*info),
        )
        return [reveal, *super().get_urls()]  # type: ignore[no-untyped-call]

    def reveal_secret_view(
        self, request: HttpRequest, object_id: str, field_name: str
    ) -> HttpResponse:
        """Shows one secret in clear after a confirmation; each reveal is audited."""
        obj = self.get_object(request, object_id)
        if obj is None or field_name not in self._secret_fields():
            raise Http404
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "object": obj,
            "field_label": self._field_label(field_name),
            "title": _("Reveal secret"),
            "revealed": None,
            "error": None,
        }
        if request.method == "POST":
            value = getattr(obj, field_name)
            try:
                context["revealed"] = value.reveal() if is_set(value) else ""
            except SecretDecryptionError as exc:
                context["error"] = str(exc)
            audit_record(
                action=Actions.SECRET_REVEAL,
                target=obj,
                extra={"field": field_name, "succeeded": context["error"] is None},
            )
        return render(request, "admin/secret_reveal.html", context)


class _ObjectPermissionAdmin(admin.ModelAdmin[Any]):
    """Every object grant in one list: who holds what on which object.

    Grants are made on the object's own page (Object permissions) or through the sharing API;
    here they can be reviewed and revoked. Each revoke is audited.
    """

    list_select_related = ("permission", "content_type")
    list_filter = ("content_type", "permission__codename")
    search_fields = ("object_pk", "permission__codename", "user__username")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("object"))
    def target(self, grant: Any) -> str:
        return f"{grant.content_type.app_label}.{grant.content_type.model} #{grant.object_pk}: " + (
            str(grant.content_object) if grant.content_object is not None else "?"
        )


@admin.register(UserObjectPermission)
class UserObjectPermissionAdmin(_ObjectPermissionAdmin):
    list_display = ("user", "permission", "target")


@admin.register(GroupObjectPermission)
class GroupObjectPermissionAdmin(_ObjectPermissionAdmin):
    list_display = ("group", "permission", "target")
    search_fields = ("object_pk", "permission__codename", "group__name")
