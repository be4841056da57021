"""Writes for workflows and model endpoints. Audit rows come from the audit registry,
inside the same transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from asgiref.sync import sync_to_async
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from assistant_site.crypto import MASK, SecretDecryptionError, StoredSecret
from assistant_site.metrics import (
    MESSAGES_RECEIVED,
    NODE_DURATION,
    RUN_QUEUE_WAIT,
    RUNS_ACTIVE,
    RUNS_FINISHED,
)
from assistant_site.permissions import permitted, viewable
from assistant_site.ratelimit import bucket_take
from assistant_site.sharing import owner_permissions_grant
from audit.services import audit_record
from knowledge.models import KnowledgeBase
from workflows.consumers import run_group
from workflows.endpoint_loading import ModelsFileError, api_key_of, models_file_parse
from workflows.engine.executor import (
    CompiledWorkflow,
    GraphInvalidError,
    NodeOutcome,
    NodeStatus,
    RunResult,
    TraceEvent,
    execute_node,
)
from workflows.engine.sensitive_words import (
    WORD_LIST_RESOURCE,
    MatcherCache,
    split_words,
)
from workflows.engine.validation import validate_graph
from workflows.exceptions import (
    DraftConflictError,
    NoPublishedVersionError,
    WebhookRefusedError,
    WorkflowInvalidError,
)
from workflows.llm.endpoints import EndpointConfig
from workflows.llm.gateway import gateway
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
from workflows.nodes import registry
from workflows.nodes.base import CREDENTIAL_RESOURCE, NodeCategory, ResourceKey
from workflows.nodes.knowledge_retrieval import KNOWLEDGE_BASE_RESOURCE
from workflows.nodes.llm import MODEL_ENDPOINT_RESOURCE, RESPONSE_CACHE_RESOURCE
from workflows.nodes.message_trigger import ChatMessage, MessageTrigger
from workflows.nodes.schedule_trigger import ScheduleTrigger, ScheduleTriggerConfig
from workflows.nodes.webhook_trigger import (
    SignatureError,
    WebhookTrigger,
    WebhookTriggerConfig,
    signature_check,
)
from workflows.signals import RunObserver, run_finished, run_observer_factories

logger = logging.getLogger(__name__)


def workflow_create(*, actor: Any, name: str, description: str = "") -> Workflow:
    with transaction.atomic():
        workflow = Workflow.objects.create(name=name, description=description, created_by=actor)
        owner_permissions_grant(user=actor, obj=workflow)
    return workflow


def workflow_update(*, workflow: Workflow, data: dict[str, Any]) -> Workflow:
    with transaction.atomic():
        for field in ("name", "description"):
            if field in data:
                setattr(workflow, field, data[field])
        workflow.save()
    return workflow


def workflow_delete(*, workflow: Workflow) -> None:
    with transaction.atomic():
        workflow_schedules_delete(workflow_id=workflow.pk)
        workflow.delete()


def model_endpoint_create(*, actor: Any, data: dict[str, Any]) -> ModelEndpoint:
    with transaction.atomic():
        endpoint = ModelEndpoint.objects.create(created_by=actor, **data)
        owner_permissions_grant(user=actor, obj=endpoint)
    return endpoint


def model_endpoint_update(*, endpoint: ModelEndpoint, data: dict[str, Any]) -> ModelEndpoint:
    with transaction.atomic():
        for field, value in data.items():
            setattr(endpoint, field, value)
        endpoint.save()
    return endpoint


def model_endpoint_delete(*, endpoint: ModelEndpoint) -> None:
    with transaction.atomic():
        endpoint.delete()


def endpoint_config(endpoint: ModelEndpoint) -> EndpointConfig:
    """What the gateway needs of an endpoint; ``revision`` changes with every save, so the
    gateway makes new clients for an edited endpoint on its next call."""
    key: Any = endpoint.api_key
    return EndpointConfig(
        id=endpoint.pk,
        name=endpoint.name,
        kind=endpoint.kind,
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=key.reveal() if isinstance(key, StoredSecret) else str(key or ""),
        timeout_s=endpoint.timeout_s,
        max_concurrency=endpoint.max_concurrency,
        default_params=dict(endpoint.default_params or {}),
        enabled=endpoint.enabled,
        revision=endpoint.updated_at.isoformat() if endpoint.updated_at else "",
    )


def model_endpoint_probe(*, endpoint: ModelEndpoint, actor: Any) -> ModelEndpoint:
    """Call the endpoint's /models and /health now; store and audit what was found."""
    result = asyncio.run(gateway.probe(endpoint_config(endpoint)))
    with transaction.atomic():
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            probe_status="ok" if result.ok else "down",
            probed_at=timezone.now(),
            probe_latency_ms=result.latency_ms,
            probe_models=list(result.models),
            probe_error=result.error,
        )
        audit_record(
            action="model_endpoint.probe",
            target=endpoint,
            actor=actor,
            extra={
                "ok": result.ok,
                "latency_ms": round(result.latency_ms, 1),
                "health": result.health,
                "models": list(result.models)[:20],
                "error": result.error[:500],
            },
        )
    endpoint.refresh_from_db()
    return endpoint


def _endpoint_clean(endpoint: ModelEndpoint) -> None:
    try:
        endpoint.full_clean()
    except DjangoValidationError as exc:
        problems = [
            f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        ]
        raise ModelsFileError(f"{endpoint.name}: {'; '.join(problems)}") from exc


def model_endpoints_load(
    *, text: str, environ: Mapping[str, str], actor: Any = None
) -> dict[str, list[str]]:
    """Create or update endpoints from a ``models.yaml`` document, by name. Idempotent: an
    unchanged entry writes nothing (and audits nothing). All or nothing: a bad entry or a
    missing key variable changes no endpoint. Endpoints not in the file are left alone."""
    document = models_file_parse(text)
    wanted = {entry.name: (entry, api_key_of(entry, environ)) for entry in document.endpoints}
    outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    with transaction.atomic():
        existing = {
            endpoint.name: endpoint
            for endpoint in ModelEndpoint.objects.select_for_update().filter(name__in=wanted)
        }
        for name, (entry, key) in wanted.items():
            values: dict[str, Any] = {
                "kind": entry.kind,
                "base_url": entry.base_url,
                "model": entry.model,
                "timeout_s": entry.timeout_s,
                "max_concurrency": entry.max_concurrency,
                "default_params": entry.default_params.given(),
                "enabled": entry.enabled,
            }
            endpoint = existing.get(name)
            if endpoint is None:
                endpoint = ModelEndpoint(name=name, created_by=actor, **values)
                if key is not None:
                    endpoint.api_key = key
                _endpoint_clean(endpoint)
                endpoint.save()
                if actor is not None:
                    owner_permissions_grant(user=actor, obj=endpoint)
                outcome["created"].append(name)
                continue
            changed = [
                field for field, value in values.items() if getattr(endpoint, field) != value
            ]
            stored: Any = endpoint.api_key
            key_changed = key is not None and (
                not isinstance(stored, StoredSecret) or stored.reveal() != key
            )
            if not changed and not key_changed:
                outcome["unchanged"].append(name)
                continue
            for field in changed:
                setattr(endpoint, field, values[field])
            if key_changed:
                endpoint.api_key = key
            _endpoint_clean(endpoint)
            endpoint.save()
            outcome["updated"].append(name)
    return outcome


def credential_create(*, actor: Any, data: dict[str, Any]) -> Credential:
    with transaction.atomic():
        credential = Credential.objects.create(created_by=actor, **data)
        owner_permissions_grant(user=actor, obj=credential)
    return credential


def credential_update(*, credential: Credential, data: dict[str, Any]) -> Credential:
    with transaction.atomic():
        for field, value in data.items():
            setattr(credential, field, value)
        credential.save()
    return credential


def credential_delete(*, credential: Credential) -> None:
    with transaction.atomic():
        credential.delete()


# --- drafts, validation, publishing --------------------------------------------------------


def _known_resources(actor: Any) -> dict[str, set[str]]:
    """What nodes may name, by resource kind: enabled word lists, and the credentials and
    knowledge bases ``actor`` may use (all of them for the system, ``actor=None``)."""
    credentials = Credential.objects.all()
    bases = KnowledgeBase.objects.all()
    endpoints = ModelEndpoint.objects.filter(enabled=True)
    if actor is not None:
        credentials = permitted(actor, "use", credentials)
        bases = viewable(actor, bases)
        endpoints = permitted(actor, "use", endpoints)
    return {
        WORD_LIST_RESOURCE: set(
            SensitiveWordList.objects.filter(enabled=True).values_list("name", flat=True)
        ),
        CREDENTIAL_RESOURCE: set(credentials.values_list("name", flat=True)),
        KNOWLEDGE_BASE_RESOURCE: {str(pk) for pk in bases.values_list("pk", flat=True)},
        MODEL_ENDPOINT_RESOURCE: set(endpoints.values_list("name", flat=True)),
    }


def workflow_validate(*, graph: Any, actor: Any = None) -> list[dict[str, Any]]:
    """Every problem of the graph. Nodes may name things in the database (word lists,
    credentials, knowledge bases): those must exist and, with an ``actor``, be theirs to use."""
    known = _known_resources(actor)
    return [problem.as_dict() for problem in validate_graph(graph, resources=known).problems]


def workflow_draft_save(*, workflow: Workflow, graph: Any, base_revision: int) -> Workflow:
    """Store the draft as given (even with problems: drafts may be unfinished), unless someone
    else saved since `base_revision`."""
    report = validate_graph(graph)
    if report.graph is None:
        # The document's shape is wrong: storing it would break the editor for everyone.
        raise WorkflowInvalidError([p.as_dict() for p in report.problems])
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
        if locked.draft_revision != base_revision:
            raise DraftConflictError(locked.draft_revision)
        locked.draft = report.graph.model_dump(mode="json")
        locked.draft_revision += 1
        locked.save(update_fields=["draft", "draft_revision", "updated_at"])
    return locked


def workflow_publish(*, workflow: Workflow, actor: Any, changelog: str = "") -> WorkflowVersion:
    problems = workflow_validate(graph=workflow.draft, actor=actor)
    if problems:
        raise WorkflowInvalidError(problems)
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
        last = locked.versions.aggregate(last=Max("number"))["last"] or 0
        version = WorkflowVersion.objects.create(
            workflow=locked,
            number=last + 1,
            graph=locked.draft,
            changelog=changelog,
            created_by=actor,
        )
        audit_record(
            action="workflow.publish",
            target=locked,
            extra={"version": version.number, "changelog": changelog[:500]},
            actor=actor,
        )
        workflow_schedules_sync(workflow=locked)
    return version


# --- runs ----------------------------------------------------------------------------------


def run_start(
    *,
    workflow: Workflow,
    actor: Any,
    trigger_input: dict[str, Any],
    version: WorkflowVersion | None = None,
    use_draft: bool = False,
    trigger_kind: str = "manual",
    trigger_node: str = "",
    conversation: Conversation | None = None,
    execute_here: bool = False,
) -> Run:
    """Queue a run of the draft (a test run), a given version, or the latest published one.
    The worker is asked to execute it only once the run row is committed; with
    ``execute_here`` (a caller on a worker's thread), this thread executes it then."""
    if use_draft:
        problems = workflow_validate(graph=workflow.draft, actor=actor)
        if problems:
            raise WorkflowInvalidError(problems)
        graph = workflow.draft
    else:
        version = version or workflow.versions.order_by("-number").first()
        if version is None:
            raise NoPublishedVersionError(
                "the workflow has no published version yet: publish it, or run the draft"
            )
        graph = version.graph
    if trigger_node and not _is_trigger(graph, trigger_node):
        raise WorkflowInvalidError(
            [
                {
                    "code": "unknown_trigger",
                    "message": f"the workflow has no trigger node {trigger_node!r}",
                    "node_id": trigger_node,
                    "edge_id": None,
                    "field": "trigger_node",
                }
            ]
        )
    # No savepoint when the caller has a transaction (a chat message's): nothing here is
    # retried on its own, and the two statements it cost were a tenth of a message's.
    with transaction.atomic(savepoint=False):
        run = Run.objects.create(
            workflow=workflow,
            version=None if use_draft else version,
            graph=graph,
            input=trigger_input,
            trigger_kind=trigger_kind,
            trigger_node=trigger_node,
            conversation=conversation,
            created_by=actor,
        )
        transaction.on_commit(functools.partial(_run_dispatch, run.pk, here=execute_here))
    return run


def _is_trigger(graph: dict[str, Any], node_id: str) -> bool:
    for node in graph.get("nodes", []):
        if node.get("id") == node_id:
            node_type = registry.get(node.get("type", ""), node.get("type_version", 1))
            return node_type is not None and node_type.category is NodeCategory.TRIGGER
    return False


def _enqueue_run(run_id: Any) -> None:
    from workflows.tasks import run_execute_task

    run_execute_task.delay(str(run_id))


def _run_dispatch(run_id: Any, *, here: bool) -> None:
    """Execute a committed run on this thread, or queue it. Executing here saves a chat
    message its second task (publish, queue wait, consume: docs/benchmarks.md). Should this
    thread fail before the run is claimed, the queued task runs it; after, runs_sweep does."""
    if here:
        try:
            run_execute(run_id=str(run_id))
            return
        except Run.DoesNotExist:
            return  # its workflow was deleted meanwhile, as in run_execute_task
        except Exception:
            logger.exception("run %s failed to execute on this thread; queued", run_id)
    _enqueue_run(run_id)


# --- messages and conversations ------------------------------------------------------------


@dataclass(frozen=True)
class MessageOutcome:
    """What became of a chat message: a run started, or why not."""

    status: Literal["started", "ignored", "rate_limited"]
    run: Run | None = None
    reason: str = ""
    reply: str = ""  # the polite answer when rate limited
    retry_after_s: float = 0.0


def _message_trigger_for(compiled: CompiledWorkflow, message: ChatMessage) -> tuple[str, str]:
    """The first message trigger accepting the message, or "" and why none did."""
    reasons: list[str] = []
    for node_id in compiled.triggers:
        node = compiled.nodes[node_id]
        if isinstance(node, MessageTrigger):
            reason = MessageTrigger.accepts(node.config, message)
            if reason is None:
                return node_id, ""
            reasons.append(reason)
    return "", "; ".join(reasons) or "the workflow has no message trigger"


def message_receive(
    *,
    workflow: Workflow,
    message: ChatMessage,
    actor: Any = None,
    version: WorkflowVersion | None = None,
    execute_here: bool = False,
) -> MessageOutcome:
    """Offer a chat message to the workflow's published version (or a pinned one).
    ``execute_here``: see :func:`run_start`.

    A message no trigger accepts starts nothing. Over the workflow's per-user rate limit, the
    caller gets the polite reply to send and no run is created. Otherwise the message joins
    its conversation (created on first contact) and a run is queued.
    """
    version = version or workflow.versions.order_by("-number").first()
    if version is None:
        raise NoPublishedVersionError("the workflow has no published version yet: publish it")
    compiled = _compile_version(version.pk, version.graph)
    trigger_node, reason = _message_trigger_for(compiled, message)
    if not trigger_node:
        MESSAGES_RECEIVED.labels("ignored").inc()
        return MessageOutcome("ignored", reason=reason)
    limit = compiled.graph.settings.rate_limit
    if limit.enabled:
        bucket = bucket_take(
            key=f"workflow:{workflow.pk}:{message.channel}:{message.user_id}",
            capacity=limit.burst,
            refill_per_s=limit.per_minute / 60,
        )
        if not bucket.allowed:
            MESSAGES_RECEIVED.labels("rate_limited").inc()
            return MessageOutcome(
                "rate_limited",
                reason="the sender is over the workflow's rate limit",
                reply=limit.message,
                retry_after_s=bucket.retry_after_s,
            )
    with transaction.atomic(savepoint=False):  # see run_start
        conversation, created = Conversation.objects.get_or_create(
            workflow=workflow,
            channel=message.channel,
            chat_id=message.chat_id,
            end_user_id=message.user_id,
        )
        run = run_start(
            workflow=workflow,
            actor=actor,
            trigger_input=message.model_dump(mode="json"),
            version=version,
            trigger_kind="message",
            trigger_node=trigger_node,
            conversation=conversation,
            execute_here=execute_here,
        )
        ConversationMessage.objects.create(
            conversation=conversation,
            role=ConversationMessage.Role.USER,
            text=message.text,
            run=run,
        )
        if not created:  # touch it, so that "last message" sorts it first
            conversation.save(update_fields=["updated_at"])
    MESSAGES_RECEIVED.labels("started").inc()
    return MessageOutcome("started", run=run)


def message_replay(*, workflow: Workflow, message: ChatMessage, actor: Any) -> Run:
    """Run a message that came in earlier against the current draft, as a test run (no
    conversation is touched and nothing is delivered): how would the draft answer it?"""
    problems = workflow_validate(graph=workflow.draft, actor=actor)
    if problems:
        raise WorkflowInvalidError(problems)
    trigger_node, reason = _message_trigger_for(CompiledWorkflow(workflow.draft), message)
    if not trigger_node:
        raise WorkflowInvalidError(
            [
                {
                    "code": "message_not_accepted",
                    "message": f"no message trigger of the draft accepts this message: {reason}",
                    "node_id": None,
                    "edge_id": None,
                    "field": "trigger_node",
                }
            ]
        )
    return run_start(
        workflow=workflow,
        actor=actor,
        trigger_input=message.model_dump(mode="json"),
        use_draft=True,
        trigger_kind="replay",
        trigger_node=trigger_node,
    )


WEBHOOK_MAX_BODY_BYTES = 1_000_000


def _webhook_signing(
    workflow: Workflow, node_id: str
) -> tuple[WorkflowVersion, WebhookTriggerConfig, str]:
    """The published version, trigger config and signing key of a webhook trigger."""
    version = workflow.versions.order_by("-number").first()
    node = next(
        (
            node
            for node in (version.graph.get("nodes", []) if version else [])
            if node.get("id") == node_id and node.get("type") == WebhookTrigger.type_id
        ),
        None,
    )
    if version is None or node is None:
        raise WebhookRefusedError(
            404, "url", "this workflow has no published webhook trigger with that id"
        )
    config = WebhookTriggerConfig.model_validate(node.get("config", {}))
    key: Any = (
        Credential.objects.filter(name=config.credential).values_list("value", flat=True).first()
    )
    if not isinstance(key, StoredSecret):
        raise WebhookRefusedError(
            503,
            "credential",
            f"the signing key credential {config.credential!r} is missing: ask the "
            "workflow's owner to create it",
        )
    return version, config, key.reveal()


def _webhook_signature_check(
    config: WebhookTriggerConfig,
    key: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
) -> None:
    try:
        signature_check(
            key=key,
            timestamp=timestamp,
            signature=signature,
            body=body,
            now=time.time(),
            max_age_s=config.max_age_s,
        )
    except SignatureError as exc:
        raise WebhookRefusedError(401, exc.field, str(exc)) from exc


def webhook_receive(
    *,
    workflow: Workflow,
    node_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
) -> Run | None:
    """Start a run of the latest published version from its signed webhook trigger.

    Refusals raise :class:`WebhookRefusedError`. A request delivered twice (same signature,
    hence same body and timestamp) starts one run: the repeat answers None.
    """
    version, config, key = _webhook_signing(workflow, node_id)
    if len(body) > WEBHOOK_MAX_BODY_BYTES:
        raise WebhookRefusedError(
            413, "body", f"the body is larger than {WEBHOOK_MAX_BODY_BYTES} bytes"
        )
    _webhook_signature_check(config, key, body, timestamp, signature)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRefusedError(400, "body", f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise WebhookRefusedError(400, "body", "the body must be a JSON object")
    # A signature covers the timestamp, so it is unique per request: remembering it for the
    # accepted window refuses replays and makes a sender's retry start one run, not two.
    if not cache.add(f"webhook:{signature}", 1, timeout=config.max_age_s * 2):
        return None
    text = payload.get("text")
    return run_start(
        workflow=workflow,
        actor=None,
        version=version,
        trigger_kind="webhook",
        trigger_node=node_id,
        trigger_input={
            "text": text if isinstance(text, str) else "",
            "payload": payload,
            "received_at": timezone.now().isoformat(),
        },
    )


WEBHOOK_MAX_WAIT_S = 30.0


def webhook_run_wait(*, run: Run, wait_s: float) -> Run:
    """Wait up to ``wait_s`` for a webhook's run to finish (the caller asked for the answer
    in the same request); answers the run as it is then."""
    deadline = time.monotonic() + min(wait_s, WEBHOOK_MAX_WAIT_S)
    delay = 0.02
    while run.status not in Run.FINISHED and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.25)
        run.refresh_from_db(fields=["status", "output", "error", "finished_at"])
    return run


def webhook_run_status(
    *,
    workflow: Workflow,
    node_id: str,
    run_id: str,
    timestamp: str | None,
    signature: str | None,
) -> Run:
    """A run a webhook started, for its caller: signed like the webhook itself, over an
    empty body (there is no login)."""
    _version, config, key = _webhook_signing(workflow, node_id)
    _webhook_signature_check(config, key, b"", timestamp, signature)
    run = Run.objects.filter(
        pk=run_id, workflow=workflow, trigger_kind="webhook", trigger_node=node_id
    ).first()
    if run is None:
        raise WebhookRefusedError(404, "run", "this webhook started no run with that id")
    return run


def _conversation_memory(run: Run, turns: int) -> dict[str, Any]:
    """What templates read as ``conversation``: who, and the earlier messages, oldest first.
    Who comes with the run's claim (:func:`_run_claim`); a run without a conversation
    (deleted since it was queued) has no memory."""
    conversation_id = run.conversation_id
    channel = getattr(run, "conversation_channel", None)
    if conversation_id is None or channel is None:
        return {}
    earlier = (
        ConversationMessage.objects.filter(conversation_id=conversation_id)
        .exclude(run_id=run.pk)
        .order_by("-id")
        .values_list("role", "text")[: turns * 2]
        if turns
        else []
    )
    return {
        "id": str(conversation_id),
        "channel": channel,
        "chat_id": getattr(run, "conversation_chat_id", ""),
        "user_id": getattr(run, "conversation_user_id", ""),
        "history": [{"role": role, "text": text} for role, text in reversed(list(earlier))],
    }


def _conversation_append_replies(run: Run, replies: list[str]) -> None:
    conversation_id = run.conversation_id
    assert conversation_id is not None  # noqa: S101  (the caller checks)
    ConversationMessage.objects.bulk_create(
        ConversationMessage(
            conversation_id=conversation_id,
            role=ConversationMessage.Role.ASSISTANT,
            text=text,
            run=run,
        )
        for text in replies
        if text
    )
    Conversation.objects.filter(pk=conversation_id).update(updated_at=timezone.now())


def _replies(events: list[TraceEvent]) -> list[str]:
    """The texts the run's reply nodes produced, in the order they finished."""
    return [
        str((event.outputs or {}).get("text", ""))
        for event in events
        if event.kind == "node_finished"
        and event.node_type == "reply"
        and event.status == "succeeded"
    ]


_compiled: dict[int, tuple[dict[str, Any], CompiledWorkflow]] = {}
_COMPILED_LIMIT = 256


def _compile_version(version_id: int, graph: dict[str, Any]) -> CompiledWorkflow:
    # A published version never changes, so its compiled form is kept per process. The graph
    # is compared too (microseconds): SQLite can hand a deleted version's id to a new one.
    cached = _compiled.get(version_id)
    if cached is not None and cached[0] == graph:
        return cached[1]
    if len(_compiled) >= _COMPILED_LIMIT:
        _compiled.pop(next(iter(_compiled)))
    compiled = CompiledWorkflow(graph)
    _compiled[version_id] = (graph, compiled)
    return compiled


def _compile(run: Run) -> CompiledWorkflow:
    if run.version_id is None:
        return CompiledWorkflow(run.graph)
    return _compile_version(run.version_id, run.graph)


# Compiled per list name and updated_at: a 100,000-word list takes about 0.2 s to build.
_word_matchers = MatcherCache()


def _word_list_words(pk: int) -> list[str]:
    return split_words(SensitiveWordList.objects.values_list("words", flat=True).get(pk=pk))


class _ResponseCache:
    """LLM nodes' answer cache, on Django's cache (Redis in production, shared by workers)."""

    async def get(self, key: str) -> Any:
        return await cache.aget(key)

    async def set(self, key: str, value: Any, ttl_s: int) -> None:
        await cache.aset(key, value, ttl_s)


_response_cache = _ResponseCache()


def _resources_load(keys: Collection[ResourceKey]) -> dict[ResourceKey, Any]:
    """Load what the run's nodes declared (``Node.required_resources``). A key naming nothing
    usable (an unknown or disabled list, an unknown, empty or undecryptable credential) is left
    out: its node then fails, naming it. Credentials are loaded as their plaintext ``str``."""
    resources: dict[ResourceKey, Any] = {}
    names = {name for kind, name in keys if kind == WORD_LIST_RESOURCE}
    if names:
        rows = SensitiveWordList.objects.filter(name__in=names, enabled=True).values_list(
            "pk", "name", "updated_at"
        )
        for pk, name, updated_at in rows:
            load = functools.partial(_word_list_words, pk)
            resources[WORD_LIST_RESOURCE, name] = _word_matchers.get_or_build(
                name, updated_at, load
            )
    credentials = {name for kind, name in keys if kind == CREDENTIAL_RESOURCE}
    if credentials:
        for name, value in Credential.objects.filter(name__in=credentials).values_list(
            "name", "value"
        ):
            if not isinstance(value, StoredSecret):
                continue  # not set
            try:
                resources[CREDENTIAL_RESOURCE, name] = value.reveal()
            except SecretDecryptionError:
                logger.warning("credential %r cannot be decrypted", name, exc_info=True)
    endpoints = {name for kind, name in keys if kind == MODEL_ENDPOINT_RESOURCE}
    if endpoints:
        for endpoint in ModelEndpoint.objects.filter(name__in=endpoints, enabled=True):
            try:
                resources[MODEL_ENDPOINT_RESOURCE, endpoint.name] = endpoint_config(endpoint)
            except SecretDecryptionError:
                logger.warning("model endpoint %r: its key cannot be decrypted", endpoint.name)
    if RESPONSE_CACHE_RESOURCE in keys:
        resources[RESPONSE_CACHE_RESOURCE] = _response_cache
    base_ids = [name for kind, name in keys if kind == KNOWLEDGE_BASE_RESOURCE]
    if base_ids and settings.CHROMA_URL:
        # Imported here: the knowledge app builds on workflows (its retriever is the
        # retrieval node's), so a module-level import would be circular.
        from knowledge.retrieval import KnowledgeBaseRetriever

        for base in KnowledgeBase.objects.filter(pk__in=[int(i) for i in base_ids if i.isdigit()]):
            resources[KNOWLEDGE_BASE_RESOURCE, str(base.pk)] = KnowledgeBaseRetriever(base)
    return resources


def _secrets_of(resources: dict[ResourceKey, Any] | None) -> frozenset[str]:
    """The plaintexts of the credentials a run loaded: what the trace must not show."""
    return frozenset(
        value
        for (kind, _name), value in (resources or {}).items()
        if kind == CREDENTIAL_RESOURCE and isinstance(value, str) and value
    )


def _mask_secrets(value: Any, secrets: Collection[str]) -> Any:
    """``value`` (JSON data: dicts, lists, strings...) with every occurrence of a secret in its
    strings, keys included, replaced by the mask.

    Masking is by value: a secret is found only where it appears verbatim, not once encoded
    (base64, URL-escaped) or split; and any text that happens to equal a secret is masked too.
    """
    if not secrets:
        return value
    if isinstance(value, str):
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {
            _mask_secrets(key, secrets): _mask_secrets(item, secrets) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask_secrets(item, secrets) for item in value]
    return value


_TRACE_VALUE_LIMIT = 16_000


def _capped(value: Any, secrets: Collection[str] = ()) -> Any:
    """Trace values are kept whole up to a size; beyond it, a preview says what was there.
    Secrets are masked first (on the JSON form, so values shown through ``str`` are covered),
    so that a preview cannot cut one in half."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if secrets:
        text = json.dumps(_mask_secrets(json.loads(text), secrets), ensure_ascii=False)
    if len(text) <= _TRACE_VALUE_LIMIT:
        return json.loads(text)
    return {"truncated": True, "size": len(text), "preview": text[:_TRACE_VALUE_LIMIT]}


def _node_runs(run: Run, events: list[TraceEvent], secrets: Collection[str] = ()) -> list[NodeRun]:
    started: dict[str, TraceEvent] = {}
    rows: list[NodeRun] = []
    for event in events:
        if event.kind == "node_started" and event.node_id and event.node_id not in started:
            started[event.node_id] = event
        if event.kind not in {"node_finished", "node_skipped"} or event.node_id is None:
            continue
        first = started.get(event.node_id)
        rows.append(
            NodeRun(
                run=run,
                seq=len(rows) + 1,
                node_id=event.node_id,
                node_type=event.node_type or "",
                status=event.status or "",
                attempts=event.attempt,
                inputs=_capped(first.inputs if first else {}, secrets),
                outputs=_capped(event.outputs or {}, secrets),
                branch=event.branch or "",
                error=_mask_secrets(event.error or "", secrets),
                started_at=(datetime.fromtimestamp(first.started_at, tz=UTC) if first else None),
                duration_ms=event.duration_ms,
                tokens_in=event.tokens_in,
                tokens_out=event.tokens_out,
            )
        )
    return rows


_TRACE_EVENT_FIELDS = tuple(field.name for field in dataclass_fields(TraceEvent))


def _event_message(event: TraceEvent, secrets: Collection[str] = ()) -> dict[str, Any]:
    # Shallow: dataclasses.asdict copied every input and output deeply, only for _capped to
    # copy them again (a tenth of a short run's CPU, bench/message_cost.py).
    data = {
        key: value
        for key in _TRACE_EVENT_FIELDS
        if (value := getattr(event, key)) not in (None, 0, 0.0)
    }
    for key in ("inputs", "outputs"):
        if key in data:
            data[key] = _capped(data[key], secrets)
    return {"type": "trace.event", "event": _mask_secrets(data, secrets)}


TRACE_BATCH_S = 0.05


async def _execute_streaming(
    compiled: CompiledWorkflow,
    run: Run,
    events: list[TraceEvent],
    *,
    resources: dict[ResourceKey, Any] | None = None,
    conversation: dict[str, Any] | None = None,
    observers: Sequence[RunObserver] = (),
) -> RunResult:
    """Run the graph, streaming its trace events to the run's WebSocket watchers in order
    and to its observers (connectors streaming the answer into a chat)."""
    layer = _thread_layer()
    queue: asyncio.Queue[TraceEvent | None] = asyncio.Queue()
    secrets = _secrets_of(resources)

    async def publish(layer: Any) -> None:
        # Events go out together, gathered for up to TRACE_BATCH_S (or until the run ends):
        # a short run costs one Redis round trip, a streaming one about 20 a second, not one
        # per event (each group send is two or three Redis commands).
        group, finished = run_group(run.pk), False
        while not finished:
            batch = [await queue.get()]
            if batch[0] is not None and not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), TRACE_BATCH_S)
            while not queue.empty():
                batch.append(queue.get_nowait())
            finished = batch[-1] is None
            sending = [_event_message(event, secrets)["event"] for event in batch if event]
            if not sending:
                continue
            try:
                await layer.group_send(group, {"type": "trace.events", "events": sending})
            except Exception:  # watchers are optional: a layer outage must not fail the run
                logger.warning("could not stream trace events of run %s", run.pk, exc_info=True)

    def sink(event: TraceEvent) -> None:
        events.append(event)
        queue.put_nowait(event)
        for observer in observers:
            try:
                observer.on_event(event)
            except Exception:  # an observer's bug must not fail the run
                logger.exception("run observer %r failed on an event of run %s", observer, run.pk)

    ended = asyncio.Event()
    publisher = asyncio.ensure_future(publish(layer)) if layer is not None else None
    cancel = asyncio.Event()
    heartbeat = asyncio.ensure_future(_heartbeat(run.pk, cancel))
    try:
        return await compiled.execute(
            cancel=cancel,
            trigger=run.input,
            trigger_node=run.trigger_node or None,
            conversation=conversation,
            sink=sink,
            resources=resources,
        )
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        if publisher is not None:
            ended.set()
            queue.put_nowait(None)
            await publisher
        for observer in observers:
            try:
                await observer.close()
            except Exception:
                logger.exception("run observer %r failed to close for run %s", observer, run.pk)


class _ThreadRunner(threading.local):
    loop: asyncio.AbstractEventLoop | None = None
    layer: Any = None
    layer_config: str = ""


_thread_runner = _ThreadRunner()


def worker_thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop runs execute on in this worker thread, kept from run to run: the
    channel layer's Redis connections belong to a loop, so a loop per run would open and
    close them for every run (about a third of a short run's cost, measured). Connectors
    send their replies on it too. Only for threads that live long (the worker's)."""
    loop = _thread_runner.loop
    if loop is None or loop.is_closed():
        loop = _thread_runner.loop = asyncio.new_event_loop()
    return loop


def _thread_layer() -> Any:
    """This thread's channel layer, made again only when the settings change (tests)."""
    if not channel_layers.configs:
        return None
    config = repr(channel_layers.configs.get(DEFAULT_CHANNEL_LAYER))
    if _thread_runner.layer is None or _thread_runner.layer_config != config:
        _thread_runner.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        _thread_runner.layer_config = config
    return _thread_runner.layer


HEARTBEAT_S = 2.0
STALE_AFTER_S = 60.0


def _beat(run_id: Any) -> bool:
    """Record that the run is alive; answer whether someone asked to cancel it."""
    try:
        Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())
        return Run.objects.filter(pk=run_id, cancel_requested=True).exists()
    finally:
        # This runs on a shared helper thread that no request cycle ever closes for.
        close_old_connections()


async def _heartbeat(run_id: Any, cancel: asyncio.Event) -> None:
    beat = sync_to_async(_beat, thread_sensitive=True)
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        if await beat(run_id):
            cancel.set()


def run_cancel(*, run: Run, actor: Any) -> Run:
    """Cancel a queued run at once, or ask the worker running it to stop (within seconds)."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status == Run.Status.QUEUED:
            locked.status = Run.Status.CANCELLED
            locked.error = "cancelled before it started"
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "error", "finished_at"])
        elif locked.status == Run.Status.RUNNING:
            locked.cancel_requested = True
            locked.save(update_fields=["cancel_requested"])
        audit_record(
            action="run.cancel",
            target=locked.workflow,
            actor=actor,
            extra={"run": str(locked.pk), "status": locked.status},
        )
    return locked


def runs_sweep(
    *, stale_after_s: float = STALE_AFTER_S, max_attempts: int = 2, requeue_after_s: float = 300
) -> dict[str, int]:
    """Recover runs a dead worker left behind, and runs whose task never reached a worker.

    A running run whose heartbeat is older than `stale_after_s` is queued again (its worker
    died mid-run) until it has been attempted `max_attempts` times, then failed with a reason.
    A queued run older than `requeue_after_s` is enqueued again (the broker lost or never got
    its task); executing is idempotent, so a duplicate does no harm.
    """
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "reenqueued": 0}
    with transaction.atomic():
        stale = Run.objects.select_for_update(skip_locked=True).filter(
            status=Run.Status.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale_after_s)
        )
        for run in stale:
            if run.attempts < max_attempts:
                run.status = Run.Status.QUEUED
                run.save(update_fields=["status"])
                transaction.on_commit(functools.partial(_enqueue_run, run.pk))
                counts["requeued"] += 1
            else:
                run.status = Run.Status.FAILED
                run.error = (
                    f"the worker executing this run stopped responding ({run.attempts} "
                    "attempt(s)); it was not retried again"
                )
                run.finished_at = now
                run.save(update_fields=["status", "error", "finished_at"])
                counts["failed"] += 1
        forgotten = Run.objects.filter(
            status=Run.Status.QUEUED, created_at__lt=now - timedelta(seconds=requeue_after_s)
        ).values_list("pk", flat=True)
        for pk in forgotten:
            transaction.on_commit(functools.partial(_enqueue_run, pk))
            counts["reenqueued"] += 1
    return counts


def _release_connection() -> None:
    # Not inside a caller's transaction (a test, or a service calling this one): closing
    # there would break it.
    if not connection.in_atomic_block:
        close_old_connections()


def _run_claim(run_id: str) -> Run | None:
    """Mark a queued run running and return it, in one statement (no explicit transaction:
    a short run's cost is mostly database round trips), with its conversation's channel,
    chat and user as ``conversation_channel``, ``conversation_chat_id`` and
    ``conversation_user_id`` (None without one). None if it is not queued: another delivery
    of the task took it, or it was cancelled."""
    fields = Run._meta
    now = timezone.now()
    started = fields.get_field("started_at").get_db_prep_value(now, connection)
    claimed = Run.objects.raw(
        f"WITH claimed AS (UPDATE {fields.db_table} SET status = %s, started_at = %s, "  # noqa: S608  (names from the models, values as parameters)
        "heartbeat_at = %s, attempts = attempts + 1 WHERE id = %s AND status = %s "
        "RETURNING *) SELECT claimed.*, c.channel AS conversation_channel, "
        "c.chat_id AS conversation_chat_id, c.end_user_id AS conversation_user_id "
        f"FROM claimed LEFT JOIN {Conversation._meta.db_table} c "
        "ON c.id = claimed.conversation_id",
        [
            Run.Status.RUNNING.value,
            started,
            started,
            fields.pk.get_db_prep_value(run_id, connection),
            Run.Status.QUEUED.value,
        ],
    )
    return next(iter(claimed), None)


def run_execute(*, run_id: str) -> Run:
    """Execute a queued run and persist its result and trace in one transaction."""
    run = _run_claim(run_id)
    if run is None:
        return Run.objects.get(pk=run_id)  # a duplicate delivery of the task: taken already
    assert run.started_at is not None  # noqa: S101  (set by the claim)
    RUN_QUEUE_WAIT.observe((run.started_at - run.created_at).total_seconds())
    events: list[TraceEvent] = []
    secrets: frozenset[str] = frozenset()
    RUNS_ACTIVE.inc()
    try:
        compiled = _compile(run)
        resources = _resources_load(compiled.required_resources)
        secrets = _secrets_of(resources)
        memory = _conversation_memory(run, compiled.graph.settings.memory_turns)
        observers = _observers_for(run)
        # A run mostly waits on models and APIs: give the connection back (to the pool) for
        # that time, or a few runs would hold every connection of the worker's threads.
        _release_connection()
        result = worker_thread_loop().run_until_complete(
            _execute_streaming(
                compiled, run, events, resources=resources, conversation=memory, observers=observers
            )
        )
        status, output, error = result.status.value, result.output or "", result.error or ""
    except GraphInvalidError as exc:
        status, output, error = Run.Status.FAILED, "", f"the graph is invalid: {exc}"
    finally:
        RUNS_ACTIVE.dec()
    RUNS_FINISHED.labels(status).inc()
    for event in events:
        if event.kind == "node_finished" and event.node_type:
            NODE_DURATION.labels(event.node_type, event.status or "").observe(
                event.duration_ms / 1000
            )
    with transaction.atomic():
        NodeRun.objects.bulk_create(_node_runs(run, events, secrets))
        output, error = _mask_secrets(output, secrets), _mask_secrets(error, secrets)
        run.status, run.output, run.error = status, output, error
        run.finished_at = timezone.now()
        run.duration_ms = (run.finished_at - run.started_at).total_seconds() * 1000
        run.save(update_fields=["status", "output", "error", "finished_at", "duration_ms"])
        if run.conversation_id is not None:
            _conversation_append_replies(run, _replies(events))
    for receiver, response in run_finished.send_robust(sender=Run, run=run):
        if isinstance(response, Exception):
            logger.error("run_finished receiver %r failed (run %s): %r", receiver, run.pk, response)
    _release_connection()  # and between tasks, for the same reason
    return run


def _observers_for(run: Run) -> list[RunObserver]:
    observers: list[RunObserver] = []
    for factory in run_observer_factories:
        try:
            observer = factory(run)
        except Exception:  # a broken observer must not stop the run
            logger.exception("run observer factory %r failed for run %s", factory, run.pk)
            continue
        if observer is not None:
            observers.append(observer)
    return observers


NODE_TEST_LIMIT_S = 60.0


def node_test_run(
    *, workflow: Workflow, node_id: str, variables: dict[str, Any], actor: Any
) -> dict[str, Any]:
    """Run one node of the draft with inputs given by hand and answer what it did, at once
    (nothing is stored). The rest of the draft may be unfinished; the node's own config must
    be valid, and what it names (credentials...) must be the actor's to use."""
    events: list[TraceEvent] = []
    spec = next((n for n in workflow.draft.get("nodes", []) if n.get("id") == node_id), None)
    if spec is None:
        raise KeyError(node_id)
    node_type = registry.get(spec.get("type", ""), spec.get("type_version", 1))
    keys: list[ResourceKey] = []
    if node_type is not None:
        try:
            keys = node_type.required_resources(
                node_type.Config.model_validate(spec.get("config", {}))
            )
        except ValueError:
            keys = []  # an invalid config is reported by execute_node, naming the field
    resources = _resources_load(keys)
    secrets = _secrets_of(resources)
    known = _known_resources(actor)

    async def test() -> NodeOutcome:
        async with asyncio.timeout(NODE_TEST_LIMIT_S):
            return await execute_node(
                workflow.draft,
                node_id,
                variables=variables,
                resources=resources,
                known_resources=known,
                sink=events.append,
            )

    _release_connection()  # the node may wait on the network
    try:
        outcome = asyncio.run(test())
    except GraphInvalidError as exc:
        raise WorkflowInvalidError([p.as_dict() for p in exc.problems]) from exc
    except TimeoutError:
        outcome = NodeOutcome(
            NodeStatus.FAILED, error=f"the test took longer than {NODE_TEST_LIMIT_S:g} s"
        )
    finished = next((e for e in reversed(events) if e.kind == "node_finished"), None)
    return {
        "node_id": node_id,
        "status": outcome.status.value,
        "outputs": _capped(outcome.outputs, secrets),
        "branch": outcome.branch,
        "error": _mask_secrets(outcome.error or "", secrets),
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "tokens_in": finished.tokens_in if finished else 0,
        "tokens_out": finished.tokens_out if finished else 0,
        "events": [_event_message(event, secrets)["event"] for event in events],
    }


# --- export, import, diff, rollback --------------------------------------------------------

EXPORT_FORMAT = 1


def workflow_export(
    *, workflow: Workflow, version: WorkflowVersion | None = None
) -> dict[str, Any]:
    """The portable document for a workflow's draft or one of its versions."""
    return {
        "assistant_studio_workflow": EXPORT_FORMAT,
        "name": workflow.name,
        "description": workflow.description,
        "version": version.number if version else None,
        "graph": version.graph if version else workflow.draft,
    }


def export_dumps(document: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2)
    return str(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))


def workflow_import(*, actor: Any, text: str, name: str | None = None) -> Workflow:
    """Create a workflow whose draft is the document's graph. YAML or JSON."""
    try:
        document = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise WorkflowInvalidError(
            [
                {
                    "code": "invalid_document",
                    "message": f"not YAML or JSON: {exc}",
                    "node_id": None,
                    "edge_id": None,
                    "field": "document",
                }
            ]
        ) from exc
    if not isinstance(document, dict) or document.get("assistant_studio_workflow") != EXPORT_FORMAT:
        raise WorkflowInvalidError(
            [
                {
                    "code": "invalid_document",
                    "node_id": None,
                    "edge_id": None,
                    "field": "document",
                    "message": "not an Assistant Studio workflow export "
                    f"(expected assistant_studio_workflow: {EXPORT_FORMAT})",
                }
            ]
        )
    report = validate_graph(document.get("graph"))
    if report.graph is None:
        raise WorkflowInvalidError([p.as_dict() for p in report.problems])
    with transaction.atomic():
        workflow = workflow_create(
            actor=actor,
            name=(name or str(document.get("name") or "Imported workflow"))[:200],
            description=str(document.get("description") or ""),
        )
        workflow.draft = report.graph.model_dump(mode="json")
        workflow.draft_revision = 1
        workflow.save(update_fields=["draft", "draft_revision", "updated_at"])
    return workflow


def workflow_rollback(*, workflow: Workflow, number: int, actor: Any) -> WorkflowVersion:
    """Publish an older version's graph again as the newest version, and make it the draft."""
    with transaction.atomic():
        locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
        old = locked.versions.get(number=number)
        last = locked.versions.aggregate(last=Max("number"))["last"] or 0
        version = WorkflowVersion.objects.create(
            workflow=locked,
            number=last + 1,
            graph=old.graph,
            changelog=f"Rollback to version {number}",
            created_by=actor,
        )
        locked.draft = old.graph
        locked.draft_revision += 1
        locked.save(update_fields=["draft", "draft_revision", "updated_at"])
        audit_record(
            action="workflow.rollback",
            target=locked,
            extra={"to_version": number, "new_version": version.number},
            actor=actor,
        )
        workflow_schedules_sync(workflow=locked)
    return version


# --- schedules -----------------------------------------------------------------------------
# Each schedule trigger of a workflow's latest published version has one django-celery-beat
# PeriodicTask, named "workflow:<workflow id>:<node id>", which beat (DatabaseScheduler) fires
# through the `workflows.run_scheduled` task. The rows are written with the version, inside the
# publish (or rollback) transaction: they roll back with a failed publish, concurrent publishes
# are serialised by the workflow's row lock, and beat, which reads them from the database,
# sees them only once the version is committed, so an on_commit hook would add nothing.

SCHEDULE_TASK = "workflows.run_scheduled"
SCHEDULE_QUEUE = "runs"


def schedule_task_name(*, workflow_id: Any, node_id: str) -> str:
    return f"workflow:{workflow_id}:{node_id}"


def _schedule_triggers(graph: dict[str, Any]) -> dict[str, ScheduleTriggerConfig]:
    """The schedule trigger nodes of a published graph, by node id."""
    return {
        spec["id"]: ScheduleTriggerConfig.model_validate(spec.get("config") or {})
        for spec in graph.get("nodes", [])
        if spec.get("type") == ScheduleTrigger.type_id
        and spec.get("type_version", 1) == ScheduleTrigger.version
    }


def _crontab_for(config: ScheduleTriggerConfig) -> Any:
    fields = {**config.crontab_fields(), "timezone": config.timezone}
    # Not get_or_create: nothing keeps the admin from adding an identical crontab, and
    # get_or_create would then raise MultipleObjectsReturned. Crontabs are shared, never
    # deleted here.
    existing = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return existing or CrontabSchedule.objects.create(**fields)


def _schedule_tasks_delete(tasks: Any) -> None:
    # One by one: PeriodicTask.delete() tells beat that the schedule changed, a bulk
    # QuerySet.delete() would not (beat would fire a deleted entry until its next full read).
    for task in tasks:
        task.delete()


def workflow_schedules_sync(*, workflow: Workflow) -> None:
    """Make the beat entries of ``workflow`` match the schedule triggers of its latest
    published version: one PeriodicTask per node, created, updated in place (a changed cron
    or time zone) or deleted (the node is gone). An operator's pause (``enabled`` off in the
    admin) is kept."""
    latest = workflow.versions.order_by("-number").first()
    triggers = _schedule_triggers(latest.graph) if latest is not None else {}
    wanted = {
        schedule_task_name(workflow_id=workflow.pk, node_id=node_id): (node_id, config)
        for node_id, config in triggers.items()
    }
    with transaction.atomic():
        existing = {
            task.name: task
            for task in PeriodicTask.objects.select_for_update().filter(
                name__startswith=schedule_task_name(workflow_id=workflow.pk, node_id="")
            )
        }
        _schedule_tasks_delete(task for name, task in existing.items() if name not in wanted)
        for name, (node_id, config) in wanted.items():
            values = {
                "task": SCHEDULE_TASK,
                "crontab": _crontab_for(config),
                "interval": None,
                "solar": None,
                "clocked": None,
                "one_off": False,
                "kwargs": json.dumps({"workflow_id": str(workflow.pk), "node_id": node_id}),
                "queue": SCHEDULE_QUEUE,
                "description": (
                    f"Schedule trigger {node_id} of the workflow “{workflow.name}”. Written when "
                    "the workflow is published: edits here are replaced by the next publish."
                ),
            }
            task = existing.get(name) or PeriodicTask(name=name, enabled=True)
            if task.pk is None or any(getattr(task, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(task, key, value)
                task.save()


def workflow_schedules_delete(*, workflow_id: Any) -> None:
    with transaction.atomic():
        _schedule_tasks_delete(
            PeriodicTask.objects.select_for_update().filter(
                name__startswith=schedule_task_name(workflow_id=workflow_id, node_id="")
            )
        )


def run_scheduled(*, workflow_id: str, node_id: str) -> Run | None:
    """Start the run for one firing of a schedule trigger (beat's task calls this).

    A firing whose schedule is no longer published (the workflow was deleted other than
    through ``workflow_delete``, or its latest version lacks the node) deletes its stale beat
    entry instead and returns None.
    """
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    latest = workflow.versions.order_by("-number").first() if workflow is not None else None
    config = _schedule_triggers(latest.graph).get(node_id) if latest is not None else None
    if workflow is None or latest is None or config is None:
        name = schedule_task_name(workflow_id=workflow_id, node_id=node_id)
        logger.warning("schedule %s is no longer published: its beat entry is deleted", name)
        _schedule_tasks_delete(PeriodicTask.objects.filter(name=name))
        return None
    return run_start(
        workflow=workflow,
        actor=None,
        version=latest,
        trigger_kind="schedule",
        trigger_node=node_id,
        trigger_input=config.trigger_input(timezone.now()),
    )


# --- demo content ------------------------------------------------------------------------

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_KNOWLEDGE_BASE = "演示知识库 Demo knowledge base"
DEMO_DOCUMENTS_DIR = DEMO_DIR / "documents"


def _demo_knowledge_base(*, owner: Any) -> KnowledgeBase:
    base = KnowledgeBase.objects.filter(name=DEMO_KNOWLEDGE_BASE).order_by("pk").first()
    if base is None:
        with transaction.atomic():
            base = KnowledgeBase.objects.create(
                name=DEMO_KNOWLEDGE_BASE,
                description="Documents for the Knowledge Q&A demo workflow.",
                created_by=owner,
            )
            owner_permissions_grant(user=owner, obj=base)
    return base


def demo_content_load(*, owner: Any) -> list[str]:
    """Create and publish the demo workflows in ``workflows/demo/`` (and the knowledge base the
    Q&A demo reads), owned by ``owner``. Idempotent: a workflow whose name exists already,
    edited or not, is left alone. Answers the names created."""
    base = _demo_knowledge_base(owner=owner)
    created: list[str] = []
    for path in sorted(DEMO_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if Workflow.objects.filter(name=document["name"]).exists():
            continue
        for spec in document["graph"]["nodes"]:
            if spec["type"] == "knowledge_retrieval":
                spec["config"]["knowledge_base_ids"] = [base.pk]
        with transaction.atomic():
            workflow = workflow_import(actor=owner, text=json.dumps(document, ensure_ascii=False))
            workflow_publish(workflow=workflow, actor=owner, changelog="Demo content")
        created.append(workflow.name)
    return created


def demo_workflow_get(*, stem: str) -> Workflow | None:
    """The demo workflow of ``workflows/demo/<stem>.yaml``, by its name (None once renamed or
    deleted)."""
    text = (DEMO_DIR / f"{stem}.yaml").read_text(encoding="utf-8")
    return Workflow.objects.filter(name=yaml.safe_load(text)["name"]).order_by("pk").first()


@dataclass(frozen=True)
class DemoDocuments:
    """What :func:`demo_documents_load` did, by file name."""

    indexed: list[str]  # uploaded (or retried) and indexed now
    present: list[str]  # there already
    failed: list[str]  # "<file name>: <reason>"


def demo_documents_load(
    *, owner: Any, progress: Callable[[str], None] | None = None
) -> DemoDocuments:
    """Upload the sample documents of ``workflows/demo/documents/`` into the demo knowledge
    base and ingest them in this process, as ``manage.py ingest`` does: the vector store must
    answer. Idempotent by file name: a sample there already is left alone, one whose
    ingestion failed is ingested again. ``progress`` hears each file name before its
    (seconds-long) ingestion."""
    from django.core.files import File

    from knowledge import services as knowledge
    from knowledge.models import Document

    base = _demo_knowledge_base(owner=owner)
    done = DemoDocuments(indexed=[], present=[], failed=[])
    for path in sorted(DEMO_DOCUMENTS_DIR.glob("*.md")):
        document = base.documents.filter(filename=path.name).first()
        if document is not None and document.status != Document.Status.FAILED:
            done.present.append(path.name)
            continue
        if document is None:
            with path.open("rb") as handle:
                document = knowledge.document_upload(
                    base=base, upload=File(handle, name=path.name), actor=owner, queue=False
                )
        if progress is not None:
            progress(path.name)
        document = knowledge.document_ingest(document_id=str(document.pk))
        if document.status == Document.Status.INDEXED:
            done.indexed.append(path.name)
        else:
            done.failed.append(f"{path.name}: {document.error}")
    return done
