from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from assistant_site.admin import GuardedAdmin
from assistant_site.permissions import user_can, viewable
from knowledge import services
from knowledge.models import Document, KnowledgeBase


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(GuardedAdmin[KnowledgeBase]):
    list_display = ("name", "embedding_endpoint", "chunk_size", "created_by", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at")


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    """Documents are uploaded through the API (or the editor's pages); here curators follow
    their status and enable, disable, retry or delete them. Uploads and removals go through
    the services, so the index and the audit trail follow."""

    list_display = (
        "title",
        "knowledge_base",
        "kind",
        "status",
        "enabled",
        "chunk_count",
        "size",
        "created_at",
    )
    list_filter = ("status", "enabled", "kind", "knowledge_base")
    search_fields = ("title", "filename", "error")
    readonly_fields = (
        "knowledge_base",
        "filename",
        "title",
        "kind",
        "size",
        "sha256",
        "status",
        "error",
        "chunk_count",
        "pages",
        "enabled",
        "created_by",
        "created_at",
        "updated_at",
    )
    exclude = ("file",)
    actions = ("enable", "disable", "retry", "delete_with_index")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        bases = viewable(request.user, KnowledgeBase.objects.all())
        return super().get_queryset(request).filter(knowledge_base__in=bases)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would leave the vectors behind
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return user_can(request.user, "view", obj.knowledge_base)
        return (
            request.user.is_staff and viewable(request.user, KnowledgeBase.objects.all()).exists()
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def _manageable(self, request: HttpRequest, queryset: QuerySet[Document]) -> list[Document]:
        allowed = [
            d for d in queryset if user_can(request.user, "manage_documents", d.knowledge_base)
        ]
        if len(allowed) < len(queryset):
            self.message_user(
                request,
                _("Skipped documents of knowledge bases you may not manage."),
                messages.WARNING,
            )
        return allowed

    @admin.action(description=_("Enable (retrieved again)"))
    def enable(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in self._manageable(request, queryset):
            services.document_set_enabled(document=document, enabled=True, actor=request.user)

    @admin.action(description=_("Disable (no longer retrieved)"))
    def disable(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in self._manageable(request, queryset):
            services.document_set_enabled(document=document, enabled=False, actor=request.user)

    @admin.action(description=_("Ingest again"))
    def retry(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in self._manageable(request, queryset):
            services.document_retry(document=document, actor=request.user)

    @admin.action(description=_("Delete, with their passages in the index"))
    def delete_with_index(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in self._manageable(request, queryset):
            services.document_delete(document=document, actor=request.user)
