from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from assistant_site.admin import GuardedAdmin
from assistant_site.permissions import viewable
from workflows.models import ModelEndpoint, NodeRun, Run, Workflow, WorkflowVersion


@admin.register(Workflow)
class WorkflowAdmin(GuardedAdmin[Workflow]):
    list_display = ("name", "created_by", "updated_at", "draft_revision")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at", "draft_revision")
    # The graph is edited in the editor (or imported), where it is validated as a whole.
    exclude = ("draft",)


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(GuardedAdmin[ModelEndpoint]):
    list_display = ("name", "kind", "base_url", "model", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "model", "base_url")
    readonly_fields = ("created_by", "created_at", "updated_at")


class _ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Versions and runs are records: nobody edits them in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        workflows = viewable(request.user, Workflow.objects.all())
        if obj is not None:
            return workflows.filter(pk=obj.workflow_id).exists()
        return request.user.is_staff and workflows.exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        workflows = viewable(request.user, Workflow.objects.all())
        return super().get_queryset(request).filter(workflow__in=workflows)


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(_ReadOnlyAdmin):
    list_display = ("workflow", "number", "created_by", "created_at", "changelog")
    list_filter = ("workflow",)
    search_fields = ("workflow__name", "changelog")


class NodeRunInline(admin.TabularInline[NodeRun, Run]):
    model = NodeRun
    fields = (
        "seq",
        "node_id",
        "node_type",
        "status",
        "attempts",
        "branch",
        "duration_ms",
        "error",
        "outputs",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(_ReadOnlyAdmin):
    list_display = (
        "id",
        "workflow",
        "version",
        "status",
        "trigger_kind",
        "created_at",
        "duration_ms",
        "error",
    )
    list_filter = ("status", "trigger_kind", "workflow")
    search_fields = ("id", "workflow__name", "error", "output")
    date_hierarchy = "created_at"
    inlines = [NodeRunInline]
    list_select_related = ("workflow", "version")
