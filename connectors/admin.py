from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from assistant_site.admin import GuardedAdmin
from assistant_site.http import OutboundHttpError
from assistant_site.permissions import user_can, viewable
from connectors import services
from connectors.base import DeliveryError
from connectors.models import Connector, Delivery, InboundEvent
from connectors.registry import adapter_for, connector_settings, platform_choices, secrets_dict
from workflows.models import Run


class ConnectorForm(forms.ModelForm[Connector]):
    platform = forms.ChoiceField(label=_("platform"), choices=())
    secrets = forms.CharField(
        label=_("credentials"),
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text=_(
            'A JSON object; write-only. Feishu/Lark: {"app_secret": ..., "verification_token": '
            '..., "encrypt_key": ...}. Telegram: {"bot_token": ..., "webhook_secret": ...}. '
            "Given keys replace the stored ones; leave empty to keep them all."
        ),
    )

    class Meta:
        model = Connector
        fields = (
            "name",
            "platform",
            "workflow",
            "enabled",
            "api_base_url",
            "config",
            "secrets",
            "group_policy",
            "streaming",
            "welcome_text",
            "error_text",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        platform = self.fields["platform"]
        assert isinstance(platform, forms.ChoiceField)  # noqa: S101  (declared above)
        platform.choices = platform_choices()
        self.initial["secrets"] = ""  # never sent to the browser

    def clean_secrets(self) -> Any:
        text = self.cleaned_data.get("secrets") or ""
        stored = secrets_dict(self.instance) if self.instance.pk else {}
        if not text:
            return self.instance.secrets if self.instance.pk else ""
        try:
            given = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(_("Not valid JSON: %(error)s") % {"error": exc}) from exc
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            raise forms.ValidationError(_("Give a JSON object of names to text values."))
        merged = {k: v for k, v in {**stored, **given}.items() if v}
        return json.dumps(merged)


@admin.register(Connector)
class ConnectorAdmin(GuardedAdmin[Connector]):
    form = ConnectorForm
    list_display = ("name", "platform", "workflow", "enabled", "group_policy", "last_error_at")
    list_filter = ("platform", "enabled")
    search_fields = ("name",)
    readonly_fields = (
        "callback",
        "stored_credentials",
        "webhook_url",
        "last_error",
        "last_error_at",
        "created_by",
        "created_at",
        "updated_at",
    )
    actions = ("identify", "register_webhook", "remove_webhook")

    @admin.action(description=_("Read the bot's identity from the platform (open_id, username)"))
    def identify(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            if not user_can(request.user, "change", connector):
                continue
            try:
                services.connector_identify(connector=connector)
            except (DeliveryError, OutboundHttpError, ValueError, DjangoValidationError) as exc:
                self.message_user(
                    request,
                    _("%(name)s: %(error)s") % {"name": connector.name, "error": exc},
                    messages.ERROR,
                )
                continue
            self.message_user(
                request,
                _("%(name)s: settings now %(config)s")
                % {"name": connector.name, "config": connector.config},
                messages.SUCCESS,
            )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The generic "Stored secrets" line reveals the whole JSON; ours lists names only.
        fields = super().get_readonly_fields(request, obj)
        return tuple(field for field in fields if field != "secret_status")

    @admin.display(description=_("Callback URL"))
    def callback(self, connector: Connector) -> str:
        if connector.pk is None:
            return str(_("Shown once the connector is saved."))
        url = services.callback_url(connector)
        try:
            hint = adapter_for(connector.platform).callback_hint(connector_settings(connector), url)
        except Exception:  # invalid stored settings: the URL is still right
            hint = ""
        return format_html("<code>{}</code><br>{}", url, hint)

    @admin.display(description=_("Stored credentials"))
    def stored_credentials(self, connector: Connector) -> str:
        names = sorted(secrets_dict(connector)) if connector.pk else []
        return ", ".join(names) or str(_("none"))

    def _webhook(self, request: HttpRequest, queryset: QuerySet[Connector], remove: bool) -> None:
        for connector in queryset:
            if connector.platform != "telegram":
                self.message_user(
                    request,
                    _("%(name)s: only Telegram connectors register a webhook")
                    % {"name": connector.name},
                    messages.WARNING,
                )
                continue
            if not user_can(request.user, "change", connector):
                self.message_user(
                    request, _("%(name)s: not allowed") % {"name": connector.name}, messages.ERROR
                )
                continue
            try:
                url = services.telegram_webhook_set(
                    connector=connector, actor=request.user, remove=remove
                )
            except (DeliveryError, OutboundHttpError) as exc:
                self.message_user(
                    request,
                    _("%(name)s: Telegram refused: %(error)s")
                    % {"name": connector.name, "error": exc},
                    messages.ERROR,
                )
                continue
            self.message_user(
                request,
                _("%(name)s: webhook removed") % {"name": connector.name}
                if remove
                else _("%(name)s: Telegram now posts to %(url)s")
                % {"name": connector.name, "url": url},
                messages.SUCCESS,
            )

    @admin.action(description=_("Register the webhook with Telegram (setWebhook)"))
    def register_webhook(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        self._webhook(request, queryset, remove=False)

    @admin.action(description=_("Remove the webhook from Telegram (deleteWebhook)"))
    def remove_webhook(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        self._webhook(request, queryset, remove=True)


class _ConnectorRowsAdmin(admin.ModelAdmin[Any]):
    """Rows of the connectors the user may view; written by the services only."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        connectors = viewable(request.user, Connector.objects.all())
        return super().get_queryset(request).filter(connector__in=connectors)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return user_can(request.user, "view", obj.connector)
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


def _run_link(run_id: Any) -> str:
    if run_id is None:
        return "-"
    url = reverse("admin:workflows_run_change", args=[run_id])
    return format_html('<a href="{}">{}</a>', url, run_id)


@admin.register(InboundEvent)
class InboundEventAdmin(_ConnectorRowsAdmin):
    list_display = (
        "received_at",
        "connector",
        "kind",
        "event_type",
        "status",
        "chat_id",
        "short_text",
        "run_link",
    )
    list_filter = ("status", "kind", "connector")
    search_fields = ("dedupe_key", "event_id", "message_id", "chat_id", "user_id", "text")
    # ?run__id__exact=<run id> answers "which event started this run".
    date_hierarchy = "received_at"
    readonly_fields = (
        "connector",
        "dedupe_key",
        "event_id",
        "event_type",
        "kind",
        "message_id",
        "chat_id",
        "user_id",
        "text",
        "status",
        "reason",
        "run_link",
        "deliveries_list",
        "item",
        "payload",
        "source_ip",
        "received_at",
        "processed_at",
    )
    exclude = ("run",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("text"))
    def short_text(self, event: InboundEvent) -> str:
        return event.text if len(event.text) <= 60 else event.text[:60] + "…"

    @admin.display(description=_("run"))
    def run_link(self, event: InboundEvent) -> str:
        return _run_link(event.run_id)

    @admin.display(description=_("deliveries"))
    def deliveries_list(self, event: InboundEvent) -> str:
        url = reverse("admin:connectors_delivery_changelist") + f"?event__id__exact={event.pk}"
        return format_html('<a href="{}">{}</a>', url, event.deliveries.count())


@admin.register(Delivery)
class DeliveryAdmin(_ConnectorRowsAdmin):
    list_display = (
        "created_at",
        "connector",
        "chat_id",
        "status",
        "attempts",
        "short_error",
        "sent_at",
        "run_link",
    )
    list_filter = ("status", "connector")
    search_fields = ("idempotency_key", "chat_id", "text", "last_error")
    readonly_fields = (
        "connector",
        "event",
        "run_link",
        "idempotency_key",
        "chat_id",
        "target",
        "text",
        "status",
        "attempts",
        "last_error",
        "message_ids",
        "created_at",
        "next_attempt_at",
        "sent_at",
    )
    exclude = ("run", "handle")
    actions = ("retry",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("last error"))
    def short_error(self, delivery: Delivery) -> str:
        error = delivery.last_error
        return error if len(error) <= 80 else error[:80] + "…"

    @admin.display(description=_("run"))
    def run_link(self, delivery: Delivery) -> str:
        return _run_link(delivery.run_id)

    @admin.action(description=_("Retry the selected dead letters"))
    def retry(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        retried = 0
        for delivery in queryset.select_related("connector"):
            if delivery.status != Delivery.Status.DEAD:
                continue
            if not user_can(request.user, "change", delivery.connector):
                continue
            services.delivery_retry(delivery=delivery, actor=request.user)
            retried += 1
        self.message_user(
            request,
            _("%(count)d dead letter(s) queued again") % {"count": retried},
            messages.SUCCESS if retried else messages.WARNING,
        )


class _RunRowsInline(admin.TabularInline[Any, Run]):
    """Read-only rows of a run's page: the event that started it, the replies it sent."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RunInboundEventInline(_RunRowsInline):
    model = InboundEvent
    fk_name = "run"
    fields = ("received_at", "connector", "event_type", "chat_id", "text", "status")
    readonly_fields = fields
    verbose_name_plural = _("started by")


class RunDeliveryInline(_RunRowsInline):
    model = Delivery
    fk_name = "run"
    fields = ("created_at", "connector", "chat_id", "status", "attempts", "sent_at", "last_error")
    readonly_fields = fields
    verbose_name_plural = _("replies delivered")


# The run's page links back to the platform event and the deliveries (the workflows app
# does not know connectors; this app adds itself to its admin).
_run_admin = admin.site._registry.get(Run)
if _run_admin is not None:
    type(_run_admin).inlines = [*_run_admin.inlines, RunInboundEventInline, RunDeliveryInline]
