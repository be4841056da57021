"""Writes for workflows and model endpoints. Audit rows come from the audit registry,
inside the same transaction."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Collection
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from asgiref.sync import sync_to_async
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.db import close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone

from assistant_site.metrics import NODE_DURATION, RUN_QUEUE_WAIT, RUNS_ACTIVE, RUNS_FINISHED
from assistant_site.sharing import owner_permissions_grant
from audit.services import audit_record
from workflows.consumers import run_group
from workflows.engine.executor import CompiledWorkflow, GraphInvalidError, RunResult, TraceEvent
from workflows.engine.sensitive_words import (
    WORD_LIST_RESOURCE,
    MatcherCache,
    split_words,
)
from workflows.engine.validation import validate_graph
from workflows.exceptions import DraftConflictError, NoPublishedVersionError, WorkflowInvalidError
from workflows.models import (
    ModelEndpoint,
    NodeRun,
    Run,
    SensitiveWordList,
    Workflow,
    WorkflowVersion,
)
from workflows.nodes.base import ResourceKey

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


# --- drafts, validation, publishing --------------------------------------------------------


def workflow_validate(*, graph: Any) -> list[dict[str, Any]]:
    # Nodes may name things in the database (word lists): the engine checks them against these.
    known = {
        WORD_LIST_RESOURCE: set(
            SensitiveWordList.objects.filter(enabled=True).values_list("name", flat=True)
        )
    }
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
    problems = workflow_validate(graph=workflow.draft)
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
) -> Run:
    """Queue a run of the draft (a test run), a given version, or the latest published one.
    The worker is asked to execute it only once the run row is committed."""
    if use_draft:
        problems = workflow_validate(graph=workflow.draft)
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
    with transaction.atomic():
        run = Run.objects.create(
            workflow=workflow,
            version=None if use_draft else version,
            graph=graph,
            input=trigger_input,
            trigger_kind=trigger_kind,
            trigger_node=trigger_node,
            created_by=actor,
        )
        transaction.on_commit(lambda: _enqueue_run(run.pk))
    return run


def _enqueue_run(run_id: Any) -> None:
    from workflows.tasks import run_execute_task

    run_execute_task.delay(str(run_id))


_compiled: dict[int, CompiledWorkflow] = {}
_COMPILED_LIMIT = 256


def _compile(run: Run) -> CompiledWorkflow:
    # A published version never changes, so its compiled form is kept per process.
    if run.version_id is None:
        return CompiledWorkflow(run.graph)
    compiled = _compiled.get(run.version_id)
    if compiled is None:
        if len(_compiled) >= _COMPILED_LIMIT:
            _compiled.pop(next(iter(_compiled)))
        compiled = _compiled[run.version_id] = CompiledWorkflow(run.graph)
    return compiled


# Compiled per list name and updated_at: a 100,000-word list takes about 0.2 s to build.
_word_matchers = MatcherCache()


def _word_list_words(pk: int) -> list[str]:
    return split_words(SensitiveWordList.objects.values_list("words", flat=True).get(pk=pk))


def _resources_load(keys: Collection[ResourceKey]) -> dict[ResourceKey, Any]:
    """Load what the run's nodes declared (``Node.required_resources``). A key naming nothing
    usable (an unknown or disabled list) is left out: its node then fails, naming it."""
    names = {name for kind, name in keys if kind == WORD_LIST_RESOURCE}
    if not names:
        return {}
    rows = SensitiveWordList.objects.filter(name__in=names, enabled=True).values_list(
        "pk", "name", "updated_at"
    )
    resources: dict[ResourceKey, Any] = {}
    for pk, name, updated_at in rows:
        load = functools.partial(_word_list_words, pk)
        resources[WORD_LIST_RESOURCE, name] = _word_matchers.get_or_build(name, updated_at, load)
    return resources


_TRACE_VALUE_LIMIT = 16_000


def _capped(value: Any) -> Any:
    """Trace values are kept whole up to a size; beyond it, a preview says what was there."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= _TRACE_VALUE_LIMIT:
        return json.loads(text)
    return {"truncated": True, "size": len(text), "preview": text[:_TRACE_VALUE_LIMIT]}


def _node_runs(run: Run, events: list[TraceEvent]) -> list[NodeRun]:
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
                inputs=_capped(first.inputs if first else {}),
                outputs=_capped(event.outputs or {}),
                branch=event.branch or "",
                error=event.error or "",
                started_at=(datetime.fromtimestamp(first.started_at, tz=UTC) if first else None),
                duration_ms=event.duration_ms,
                tokens_in=event.tokens_in,
                tokens_out=event.tokens_out,
            )
        )
    return rows


def _event_message(event: TraceEvent) -> dict[str, Any]:
    data = {key: value for key, value in asdict(event).items() if value not in (None, 0, 0.0)}
    for key in ("inputs", "outputs"):
        if key in data:
            data[key] = _capped(data[key])
    return {"type": "trace.event", "event": data}


async def _execute_streaming(
    compiled: CompiledWorkflow,
    run: Run,
    events: list[TraceEvent],
    resources: dict[ResourceKey, Any] | None = None,
) -> RunResult:
    """Run the graph, streaming each trace event to the run's WebSocket watchers in order."""
    # A layer of this run's own: channels-redis keeps connections per event loop, and each run
    # has its own loop here, so sharing the process-wide layer would mix loops across threads.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER) if channel_layers.configs else None
    queue: asyncio.Queue[TraceEvent | None] = asyncio.Queue()

    async def publish(layer: Any) -> None:
        group = run_group(run.pk)
        while (event := await queue.get()) is not None:
            try:
                await layer.group_send(group, _event_message(event))
            except Exception:  # watchers are optional: a layer outage must not fail the run
                logger.warning("could not stream trace event of run %s", run.pk, exc_info=True)

    def sink(event: TraceEvent) -> None:
        events.append(event)
        queue.put_nowait(event)

    publisher = asyncio.ensure_future(publish(layer)) if layer is not None else None
    cancel = asyncio.Event()
    heartbeat = asyncio.ensure_future(_heartbeat(run.pk, cancel))
    try:
        return await compiled.execute(
            cancel=cancel,
            trigger=run.input,
            trigger_node=run.trigger_node or None,
            sink=sink,
            resources=resources,
        )
    finally:
        heartbeat.cancel()
        if publisher is not None:
            queue.put_nowait(None)
            await publisher
            close = getattr(layer, "close_pools", None)
            if close is not None:
                await close()  # this event loop ends with the run


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


def run_execute(*, run_id: str) -> Run:
    """Execute a queued run and persist its result and trace in one transaction."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        if run.status != Run.Status.QUEUED:
            return run  # a duplicate delivery of the task: the run is taken already
        run.status = Run.Status.RUNNING
        run.started_at = run.heartbeat_at = timezone.now()
        run.attempts += 1
        run.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    RUN_QUEUE_WAIT.observe((run.started_at - run.created_at).total_seconds())
    events: list[TraceEvent] = []
    RUNS_ACTIVE.inc()
    try:
        compiled = _compile(run)
        resources = _resources_load(compiled.required_resources)
        # A run mostly waits on models and APIs: give the connection back (to the pool) for
        # that time, or a few runs would hold every connection of the worker's threads.
        _release_connection()
        result = asyncio.run(_execute_streaming(compiled, run, events, resources))
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
        NodeRun.objects.bulk_create(_node_runs(run, events))
        run.status, run.output, run.error = status, output, error
        run.finished_at = timezone.now()
        run.duration_ms = (run.finished_at - run.started_at).total_seconds() * 1000
        run.save(update_fields=["status", "output", "error", "finished_at", "duration_ms"])
    _release_connection()  # and between tasks, for the same reason
    return run


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
    return version
