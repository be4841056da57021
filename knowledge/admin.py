from __future__ import annotations

from django.contrib import admin

from assistant_site.admin import GuardedAdmin
from knowledge.models import KnowledgeBase


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(GuardedAdmin[KnowledgeBase]):
    list_display = ("name", "created_by", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at")
