from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from assistant_site.crypto import EncryptedTextField
from assistant_site.models import OwnedModel
from assistant_site.permissions import register_guarded
from assistant_site.validators import validate_service_url


@register_guarded
class Connector(OwnedModel):
    """Brings a workflow into a chat platform: where its events come in (the callback URL),
    the credentials it answers with, and how it behaves in group chats.

    ``config`` holds the platform's non-secret settings and ``secrets`` (encrypted, a JSON
    object) its credentials; both are validated by the platform adapter's models
    (``connectors.registry``).
    """

    class GroupPolicy(models.TextChoices):
        MENTIONED = "mentioned", _("Answer when @-mentioned, commanded or replied to")
        ALL = "all", _("Answer every group message")
        NEVER = "never", _("Stay silent in groups")

    name = models.CharField(_("name"), max_length=100, unique=True)
    platform = models.CharField(_("platform"), max_length=20)
    workflow = models.ForeignKey(
        "workflows.Workflow",
        verbose_name=_("workflow"),
        on_delete=models.PROTECT,
        related_name="connectors",
        help_text=_("The published workflow each message starts."),
    )
    enabled = models.BooleanField(
        _("enabled"),
        default=True,
        help_text=_("A disabled connector refuses its platform's events (HTTP 404)."),
    )
    api_base_url = models.URLField(
        _("platform API base URL"),
        blank=True,
        validators=[validate_service_url],
        help_text=_(
            "Empty: the platform's default (open.feishu.cn, api.telegram.org). Lark "
            "international: https://open.larksuite.com; or a self-hosted Telegram Bot API server."
        ),
    )
    config = models.JSONField(_("settings"), default=dict, blank=True)
    secrets = EncryptedTextField(_("credentials"), blank=True)
    group_policy = models.CharField(
        _("group chats"),
        max_length=16,
        choices=GroupPolicy.choices,
        default=GroupPolicy.MENTIONED,
    )
    streaming = models.BooleanField(
        _("stream answers"),
        default=True,
        help_text=_("Show the answer while it is generated, by editing the reply message."),
    )
    welcome_text = models.TextField(
        _("welcome text"),
        blank=True,
        default="Hello! Ask me anything.",
        help_text=_("The answer to /start and /help."),
    )
    error_text = models.TextField(
        _("error text"),
        blank=True,
        default="Sorry, I could not answer that just now. Please try again in a moment.",
        help_text=_("Sent when a run fails without a reply. Empty: send nothing."),
    )
    # Set when the platform refused our credentials for good (ConnectorError permanent).
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    # Telegram long polling: the next update id to ask for (the highest handled + 1).
    poll_offset = models.BigIntegerField(_("polling offset"), null=True, blank=True, editable=False)
    webhook_url = models.URLField(
        _("registered webhook URL"),
        blank=True,
        editable=False,
        help_text=_("What setWebhook was last called with (Telegram)."),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("connector")
        verbose_name_plural = _("connectors")
        permissions = [("use_connector", _("Can use connector (replay and test messages)"))]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from connectors.registry import adapter_for, settings_problems

        try:
            adapter_for(self.platform)
        except KeyError as exc:
            raise ValidationError({"platform": str(exc.args[0])}) from exc
        problems = settings_problems(self)
        if problems:
            raise ValidationError(problems)


class InboundEvent(models.Model):
    """One event a platform delivered and we accepted, stored before the HTTP answer.

    Unique per (connector, dedupe key): a redelivery is acknowledged and dropped. ``status``
    follows the event from arrival to the run it started (or why it started none).
    """

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSING = "processing", _("Processing")
        STARTED = "started", _("Run started")
        REPLIED = "replied", _("Run finished, replies queued")
        ANSWERED = "answered", _("Answered by the connector")
        IGNORED = "ignored", _("Ignored")
        RATE_LIMITED = "rate_limited", _("Rate limited")
        FAILED = "failed", _("Failed")

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="events")
    dedupe_key = models.CharField(_("deduplication key"), max_length=200)
    event_id = models.CharField(_("platform event id"), max_length=200, blank=True)
    event_type = models.CharField(_("event type"), max_length=100, blank=True)
    kind = models.CharField(_("kind"), max_length=16)  # InboundItem.kind
    message_id = models.CharField(_("platform message id"), max_length=200, blank=True)
    chat_id = models.CharField(_("chat"), max_length=200, blank=True)
    user_id = models.CharField(_("sender"), max_length=200, blank=True)
    text = models.TextField(_("text"), blank=True)
    item = models.JSONField(_("parsed"), default=dict)  # message, target, command, attachments
    payload = models.JSONField(_("raw payload"), default=dict)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED
    )
    reason = models.TextField(_("reason"), blank=True)
    run = models.ForeignKey(
        "workflows.Run",
        verbose_name=_("run"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbound_events",
    )
    source_ip = models.GenericIPAddressField(_("source address"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("inbound event")
        verbose_name_plural = _("inbound events")
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "dedupe_key"], name="unique_inbound_event_per_connector"
            )
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="inbound_status_received")]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.dedupe_key}"


class Delivery(models.Model):
    """One reply on its way to a chat: sent once (``idempotency_key``), retried with backoff
    on 429/5xx, kept as a dead letter when it cannot be delivered (retry from the admin)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        STREAMING = "streaming", _("Streaming")
        SENT = "sent", _("Sent")
        DEAD = "dead", _("Failed (dead letter)")

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(
        InboundEvent,
        verbose_name=_("inbound event"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    run = models.ForeignKey(
        "workflows.Run",
        verbose_name=_("run"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    chat_id = models.CharField(_("chat"), max_length=200)
    target = models.JSONField(_("target"), default=dict)  # ReplyTarget fields
    text = models.TextField(_("text"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(
        _("attempts"), default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    last_error = models.TextField(_("last error"), blank=True)
    message_ids = models.JSONField(_("platform message ids"), default=list, blank=True)
    handle = models.JSONField(_("stream handle"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        indexes = [
            models.Index(fields=["connector", "chat_id", "status"], name="delivery_chat_status")
        ]

    def __str__(self) -> str:
        return self.idempotency_key

    @property
    def latency_s(self) -> float | None:
        if self.sent_at is None:
            return None
        return (self.sent_at - self.created_at).total_seconds()
