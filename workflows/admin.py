from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from assistant_site.admin import GuardedAdmin
from workflows import services
from workflows.engine.sensitive_words import split_words, word_problems
from workflows.models import (
    Conversation,
    ConversationMessage,
    Credential,
    ModelEndpoint,
    NodeRun,
    Run,
    SensitiveWordList,
    Workflow,
    WorkflowVersion,
)
from workflows.selectors import workflow_list

# 100,000 words of at most 100 characters, at up to 3 bytes each in UTF-8, plus line breaks.
UPLOAD_MAX_BYTES = 32 * 1024 * 1024


@admin.register(Workflow)
class WorkflowAdmin(GuardedAdmin[Workflow]):
    list_display = ("name", "created_by", "updated_at", "draft_revision")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at", "draft_revision")
    # The graph is edited in the editor (or imported), where it is validated as a whole.
    exclude = ("draft",)


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(GuardedAdmin[ModelEndpoint]):
    list_display = (
        "name",
        "kind",
        "base_url",
        "model",
        "enabled",
        "probe_status",
        "probe_latency_ms",
        "probed_at",
    )
    list_filter = ("kind", "enabled", "probe_status")
    search_fields = ("name", "model", "base_url")
    readonly_fields = (
        "created_by",
        "created_at",
        "updated_at",
        "probe_status",
        "probed_at",
        "probe_latency_ms",
        "probe_models",
        "probe_error",
    )
    actions = ("probe",)

    @admin.action(description=_("Probe: is it up, which models, how fast"))
    def probe(self, request: HttpRequest, queryset: QuerySet[ModelEndpoint]) -> None:
        for endpoint in queryset:
            probed = services.model_endpoint_probe(endpoint=endpoint, actor=request.user)
            if probed.probe_status == "ok":
                self.message_user(
                    request,
                    _("%(name)s is up (%(latency).0f ms), serving %(models)s")
                    % {
                        "name": probed.name,
                        "latency": probed.probe_latency_ms or 0,
                        "models": ", ".join(probed.probe_models) or "-",
                    },
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    _("%(name)s is down: %(error)s")
                    % {"name": probed.name, "error": probed.probe_error},
                    messages.ERROR,
                )


@admin.register(Credential)
class CredentialAdmin(GuardedAdmin[Credential]):
    list_display = ("name", "description", "created_by", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("created_by", "created_at", "updated_at")


class SensitiveWordListForm(forms.ModelForm[SensitiveWordList]):
    # A file also makes the form multipart: a browser then posts the words as plain UTF-8
    # rather than percent-encoded (3 times larger for Chinese), which keeps a typical
    # 100,000-word list (about 1.5 MB) under Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
    # Uploaded file data does not count against that limit.
    upload = forms.FileField(
        label=_("Replace with a file"),
        required=False,
        help_text=_("A UTF-8 text file, one word per line. It replaces the words above."),
    )

    class Meta:
        model = SensitiveWordList
        fields = ("name", "description", "enabled", "words")
        widgets = {"words": forms.Textarea(attrs={"rows": 20, "cols": 60})}

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        upload = cleaned.get("upload")
        field, text = "words", cleaned.get("words") or ""
        if upload is not None:
            field = "upload"
            if upload.size > UPLOAD_MAX_BYTES:
                self.add_error(field, _("The file is larger than 32 MB."))
                return cleaned
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                self.add_error(field, _("The file is not UTF-8 text."))
                return cleaned
        # Stored as matched: stripped, one per line, no blanks or repeats (ignoring case).
        words = split_words(text)
        problems = word_problems(words)
        if problems:
            self.add_error(field, problems)
        else:
            cleaned["words"] = "\n".join(words)
        return cleaned


@admin.register(SensitiveWordList)
class SensitiveWordListAdmin(admin.ModelAdmin[SensitiveWordList]):
    """Lists for the sensitive-word filter node; model-wide permissions (Administrators)."""

    form = SensitiveWordListForm
    fields = ("name", "description", "enabled", "words", "upload", "created_at", "updated_at")
    list_display = ("name", "enabled", "word_count", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "description", "words")
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description=_("word count"))
    def word_count(self, obj: SensitiveWordList) -> int:
        return obj.word_count


class _ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Versions and runs are records: nobody edits them in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        workflows = workflow_list(user=request.user)
        if obj is not None:
            return workflows.filter(pk=obj.workflow_id).exists()
        return request.user.is_staff and workflows.exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        workflows = workflow_list(user=request.user)
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


class ConversationMessageInline(admin.TabularInline[ConversationMessage, Conversation]):
    model = ConversationMessage
    fields = ("created_at", "role", "text", "run")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(_ReadOnlyAdmin):
    """Conversations are written by runs; people read them here."""

    list_display = ("workflow", "channel", "chat_id", "end_user_id", "updated_at")
    list_filter = ("channel",)
    search_fields = ("chat_id", "end_user_id")
    inlines = (ConversationMessageInline,)
