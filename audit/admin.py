from __future__ import annotations

import csv
import json
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.models import AuditEntry
from audit.services import Actions, audit_record

_CSV_COLUMNS = (
    "seq",
    "created_at",
    "action",
    "actor_username",
    "actor_id",
    "target_type",
    "target_id",
    "target_repr",
    "changes",
    "extra",
    "source",
    "request_id",
    "ip",
    "user_agent",
    "prev_hash",
    "entry_hash",
)


class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    """Read-only for everyone, superusers included: the trail is evidence."""

    list_display = (
        "seq",
        "created_at",
        "actor_username",
        "action",
        "target_type",
        "target_repr",
        "ip",
        "source",
    )
    list_filter = ("action", "target_type", "source", ("created_at", admin.DateFieldListFilter))
    search_fields = ("actor_username", "target_repr", "target_id", "request_id", "ip")
    date_hierarchy = "created_at"
    readonly_fields = _CSV_COLUMNS
    ordering = ("-seq",)
    list_per_page = 100
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_list_filter(self, request: HttpRequest) -> Any:
        return (*self.list_filter, "actor_username")

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),
            name="audit_auditentry_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_export": self._may_export(request)}
        return super().changelist_view(request, extra_context)

    def _may_export(self, request: HttpRequest) -> bool:
        return request.user.has_perm("audit.export_auditentry")

    def export_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The changelist's current filters and search, as CSV. The export is itself audited."""
        if not self._may_export(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        # The file holds the trail as it stood before this export was recorded (the rows are
        # read lazily, after the entry below is written), so it matches the recorded count.
        head = AuditEntry.objects.aggregate(head=Max("seq"))["head"] or 0
        queryset: QuerySet[AuditEntry] = (
            changelist.get_queryset(request).filter(seq__lte=head).order_by("seq")
        )
        audit_record(
            action=Actions.AUDIT_EXPORT,
            target_type=AuditEntry._meta.label_lower,
            extra={"filters": dict(request.GET.items()), "rows": queryset.count()},
        )
        writer = csv.writer(_Echo())

        def rows() -> Any:
            yield writer.writerow(_CSV_COLUMNS)
            for entry in queryset.iterator(chunk_size=2000):
                yield writer.writerow([_csv_value(getattr(entry, c)) for c in _CSV_COLUMNS])

        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
        return response


def _csv_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = "" if value is None else str(value)
    # A cell starting with = + - @ (or tab / carriage return) runs as a formula in a spreadsheet.
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


AuditEntryAdmin.export_csv_view.short_description = _("Export CSV")  # type: ignore[attr-defined]
