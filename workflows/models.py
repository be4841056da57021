from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from pydantic import ValidationError as PydanticValidationError

from assistant_site.crypto import EncryptedTextField
from assistant_site.models import OwnedModel
from assistant_site.permissions import register_guarded
from assistant_site.validators import validate_service_url
from workflows.nodes.llm import GenerationParams


def validate_generation_params(value: Any) -> None:
    try:
        GenerationParams.model_validate(value)
    except PydanticValidationError as exc:
        raise ValidationError(
            [
                f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                for error in exc.errors()
            ]
        ) from exc


def empty_graph() -> dict[str, Any]:
    return {"format_version": 1, "nodes": [], "edges": [], "variables": {}}


@register_guarded
class Workflow(OwnedModel):
    """A graph of nodes designed in the editor. The graph and versions come with the engine."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    draft = models.JSONField(_("draft graph"), default=empty_graph, blank=True)
    # Bumped by every draft save: a save based on an older revision is a conflict.
    draft_revision = models.PositiveIntegerField(_("draft revision"), default=0)

    class Meta:
        ordering = ["name"]
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
        permissions = [
            ("publish_workflow", _("Can publish workflow")),
            ("run_workflow", _("Can run workflow")),
        ]

    def __str__(self) -> str:
        return self.name


@register_guarded
class ModelEndpoint(OwnedModel):
    """An OpenAI-compatible model server (vLLM or a commercial API) that LLM nodes call."""

    class Kind(models.TextChoices):
        CHAT = "chat", _("Chat")
        EMBEDDING = "embedding", _("Embedding")
        RERANK = "rerank", _("Rerank")

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.CHAT)
    base_url = models.CharField(
        _("base URL"),
        max_length=500,
        validators=[validate_service_url],
        help_text=_("For example http://vllm:8000/v1"),
    )
    model = models.CharField(_("served model name"), max_length=200)
    api_key = EncryptedTextField(_("API key"))
    timeout_s = models.FloatField(
        _("timeout (seconds)"),
        default=60.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text=_(
            "For each call attempt: the wait for the answer, or with streaming for its start "
            "and between pieces."
        ),
    )
    max_concurrency = models.PositiveIntegerField(
        _("max concurrent requests"),
        default=64,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text=_(
            "Per worker process. vLLM batches up to 256 sequences by default: keep this near "
            "the server's --max-num-seqs divided by the number of worker processes."
        ),
    )
    default_params = models.JSONField(
        _("default parameters"),
        default=dict,
        blank=True,
        validators=[validate_generation_params],
        help_text=_('Sent with every call unless a node sets them, e.g. {"temperature": 0.7}.'),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    # What the last probe found (the admin's "probe" action and the probe API write these).
    probe_status = models.CharField(
        _("probe status"),
        max_length=16,
        choices=[("", _("not probed")), ("ok", _("up")), ("down", _("down"))],
        default="",
        blank=True,
    )
    probed_at = models.DateTimeField(_("probed at"), null=True, blank=True)
    probe_latency_ms = models.FloatField(_("probe latency (ms)"), null=True, blank=True)
    probe_models = models.JSONField(_("models served"), default=list, blank=True)
    probe_error = models.TextField(_("probe error"), blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("model endpoint")
        verbose_name_plural = _("model endpoints")
        permissions = [("use_modelendpoint", _("Can use model endpoint in workflows"))]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(models.Model):
    """A published, immutable snapshot of a workflow's graph."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("number"))
    graph = models.JSONField(_("graph"))
    changelog = models.TextField(_("changelog"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("published by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("published"), auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        verbose_name = _("workflow version")
        verbose_name_plural = _("workflow versions")
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.workflow} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("a published workflow version cannot be changed")
        super().save(*args, **kwargs)


class Run(models.Model):
    """One execution of a workflow version (or of the draft, for a test run)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        TIMED_OUT = "timed_out", _("Timed out")
        CANCELLED = "cancelled", _("Cancelled")

    FINISHED = {Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED}

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(
        WorkflowVersion, null=True, blank=True, on_delete=models.RESTRICT, related_name="runs"
    )
    # The graph that ran: the version's, or the draft's at the time of a test run.
    graph = models.JSONField(_("graph"))
    trigger_kind = models.CharField(_("trigger"), max_length=32, default="manual")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    input = models.JSONField(_("input"), default=dict, blank=True)
    output = models.TextField(_("output"), blank=True)
    error = models.TextField(_("error"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("queued at"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    duration_ms = models.FloatField(_("duration (ms)"), null=True, blank=True)
    # Written by the worker while it executes the run; a stale heartbeat means it died.
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # Set by someone cancelling a running run; the worker notices it with its heartbeat.
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # The trigger node that started the run (a graph may have several); blank: the first.
    trigger_node = models.CharField(_("trigger node"), max_length=64, blank=True)
    conversation = models.ForeignKey(
        "Conversation",
        verbose_name=_("conversation"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("run")
        verbose_name_plural = _("runs")

    def __str__(self) -> str:
        return f"{self.workflow} run {str(self.id)[:8]} ({self.status})"


class NodeRun(models.Model):
    """One node's part in a run: what it got, what it gave, how long, how it ended."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="node_runs")
    seq = models.PositiveIntegerField(_("order"))
    node_id = models.CharField(_("node"), max_length=64)
    node_type = models.CharField(_("node type"), max_length=64)
    status = models.CharField(_("status"), max_length=16)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    inputs = models.JSONField(_("inputs"), default=dict, blank=True)
    outputs = models.JSONField(_("outputs"), default=dict, blank=True)
    branch = models.CharField(_("branch"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    duration_ms = models.FloatField(_("duration (ms)"), default=0)
    tokens_in = models.PositiveIntegerField(_("tokens in"), default=0)
    tokens_out = models.PositiveIntegerField(_("tokens out"), default=0)

    class Meta:
        ordering = ["run", "seq"]
        verbose_name = _("node run")
        verbose_name_plural = _("node runs")

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status})"


class SensitiveWordList(models.Model):
    """Words the ``sensitive_word_filter`` node masks or blocks, one per line, managed in the
    admin. Runners cache each list compiled by ``updated_at``: change lists with ``save()``
    (the admin does), not ``QuerySet.update()``, so that workers see the change."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    words = models.TextField(
        _("words"),
        blank=True,
        help_text=_(
            "One word or phrase per line, Chinese or English; letter case is ignored when "
            "matching. At most 100,000 words of at most 100 characters each. Blank lines and "
            "repeats are dropped on save."
        ),
    )
    enabled = models.BooleanField(
        _("enabled"),
        default=True,
        help_text=_(
            "A workflow naming a disabled list cannot be published, and its runs fail at "
            "that node, naming the list."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("sensitive word list")
        verbose_name_plural = _("sensitive word lists")

    def __str__(self) -> str:
        return self.name

    @property
    def word_count(self) -> int:
        return sum(1 for line in self.words.splitlines() if line.strip())


class Conversation(models.Model):
    """The memory of one chat with one end user, per workflow and channel.

    ``channel`` says where the messages come from (``connector:<id>``, ``webhook``,
    ``manual``); ``chat_id`` and ``end_user_id`` are the platform's own ids. Runs read the
    last turns (``conversation.history``) and the run's reply is appended as the next turn.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(_("channel"), max_length=100)
    chat_id = models.CharField(_("chat"), max_length=200)
    end_user_id = models.CharField(_("end user"), max_length=200)
    created_at = models.DateTimeField(_("started"), auto_now_add=True)
    updated_at = models.DateTimeField(_("last message"), auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "channel", "chat_id", "end_user_id"],
                name="unique_conversation_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.chat_id} / {self.end_user_id}"


class ConversationMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("End user")
        ASSISTANT = "assistant", _("Assistant")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    text = models.TextField(_("text"))
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    created_at = models.DateTimeField(_("sent"), auto_now_add=True)

    class Meta:
        ordering = ["conversation", "id"]
        verbose_name = _("conversation message")
        verbose_name_plural = _("conversation messages")
        indexes = [models.Index(fields=["conversation", "-id"], name="conversation_recent")]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"


@register_guarded
class Credential(OwnedModel):
    """A secret a workflow uses by name: an API token for HTTP request nodes, the signing key
    of a webhook trigger. Encrypted at rest, never shown by the API, masked in traces."""

    name = models.CharField(
        _("name"),
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9_.-]+$",
                _("Use letters, digits, dots, dashes and underscores only."),
            )
        ],
    )
    description = models.TextField(_("description"), blank=True)
    value = EncryptedTextField(_("value"))

    class Meta:
        ordering = ["name"]
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")
        permissions = [("use_credential", _("Can use credential in workflows"))]

    def __str__(self) -> str:
        return self.name
