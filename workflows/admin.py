from __future__ import annotations

from django.contrib import admin

from assistant_site.admin import GuardedAdmin
from workflows.models import ModelEndpoint, Workflow


@admin.register(Workflow)
class WorkflowAdmin(GuardedAdmin[Workflow]):
    list_display = ("name", "created_by", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at")


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(GuardedAdmin[ModelEndpoint]):
    list_display = ("name", "kind", "base_url", "model", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "model", "base_url")
    readonly_fields = ("created_by", "created_at", "updated_at")
