"""Schedule triggers: publishing writes django-celery-beat entries, beat's scheduler reads them,
and a firing starts a run from the schedule trigger."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from assistant_site.celery import app
from assistant_site.roles import DESIGNER
from tests.workflows.graphs import echo_graph, edge, node
from workflows import services
from workflows.models import NodeRun, Run, Workflow
from workflows.tasks import run_scheduled_task

CRON = "*/15 9-17 * * mon-fri"
ZONE = "Asia/Shanghai"


def schedule_graph(
    cron: str = CRON, timezone: str = ZONE, *, manual: bool = False
) -> dict[str, Any]:
    """schedule trigger -> template -> end, optionally with a manual trigger listed first."""
    nodes = [
        node("tick", "schedule_trigger", cron=cron, timezone=timezone, message="日报"),
        node(
            "greet",
            "template",
            template="{{ trigger.text }}|{{ nodes.tick.fired_at }}|{{ trigger.payload.cron }}",
        ),
        node("done", "end", output="{{ nodes.greet.text }}"),
    ]
    edges = [edge("tick", "greet"), edge("greet", "done")]
    if manual:
        nodes.insert(0, node("start", "manual_trigger"))
        edges.append(edge("start", "greet"))
    return {"format_version": 1, "nodes": nodes, "edges": edges, "variables": {}}


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def workflow(designer: Any) -> Workflow:
    return services.workflow_create(actor=designer, name="日报")


def publish(workflow: Workflow, graph: dict[str, Any], actor: Any) -> None:
    workflow.refresh_from_db()
    services.workflow_draft_save(
        workflow=workflow, graph=graph, base_revision=workflow.draft_revision
    )
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=actor)


def entry_for(workflow: Workflow, node_id: str = "tick") -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab").get(
        name=f"workflow:{workflow.pk}:{node_id}"
    )


def workflow_entries(workflow: Workflow) -> list[str]:
    return sorted(
        PeriodicTask.objects.filter(name__startswith=f"workflow:{workflow.pk}:").values_list(
            "name", flat=True
        )
    )


def test_publishing_a_schedule_trigger_creates_its_beat_entry(
    workflow: Workflow, designer: Any
) -> None:
    publish(workflow, schedule_graph(), designer)
    task = entry_for(workflow)
    assert task.task == "workflows.run_scheduled" == run_scheduled_task.name
    assert json.loads(task.kwargs) == {"workflow_id": str(workflow.pk), "node_id": "tick"}
    assert task.queue == "runs"
    assert task.enabled
    assert not task.one_off
    assert task.interval is None
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "*/15",
        "9-17",
        "*",
        "*",
        "mon-fri",
    )
    assert str(cron.timezone) == ZONE


def test_a_draft_alone_schedules_nothing(workflow: Workflow) -> None:
    services.workflow_draft_save(workflow=workflow, graph=schedule_graph(), base_revision=0)
    assert workflow_entries(workflow) == []


def test_republishing_with_a_changed_cron_updates_the_entry_in_place(
    workflow: Workflow, designer: Any
) -> None:
    publish(workflow, schedule_graph(), designer)
    first = entry_for(workflow)
    publish(workflow, schedule_graph(cron="0 8 1 * *", timezone="Europe/Berlin"), designer)
    second = entry_for(workflow)
    assert second.pk == first.pk
    assert (second.crontab.minute, second.crontab.hour, second.crontab.day_of_month) == (
        "0",
        "8",
        "1",
    )
    assert str(second.crontab.timezone) == "Europe/Berlin"
    assert workflow_entries(workflow) == [f"workflow:{workflow.pk}:tick"]


def test_an_operators_pause_survives_republishing(workflow: Workflow, designer: Any) -> None:
    publish(workflow, schedule_graph(), designer)
    PeriodicTask.objects.filter(pk=entry_for(workflow).pk).update(enabled=False)
    publish(workflow, schedule_graph(cron="0 8 * * *"), designer)
    task = entry_for(workflow)
    assert not task.enabled
    assert task.crontab.hour == "8"


def test_publishing_without_the_node_removes_its_entry(workflow: Workflow, designer: Any) -> None:
    other = services.workflow_create(actor=designer, name="other")
    publish(other, schedule_graph(), designer)
    publish(workflow, schedule_graph(), designer)
    publish(workflow, echo_graph(), designer)
    assert workflow_entries(workflow) == []
    assert workflow_entries(other) == [f"workflow:{other.pk}:tick"]


def test_rollback_syncs_the_schedule_of_the_version_it_restores(
    workflow: Workflow, designer: Any
) -> None:
    publish(workflow, schedule_graph(cron="0 7 * * *"), designer)
    publish(workflow, echo_graph(), designer)
    assert workflow_entries(workflow) == []
    services.workflow_rollback(workflow=workflow, number=1, actor=designer)
    assert entry_for(workflow).crontab.hour == "7"
    services.workflow_rollback(workflow=workflow, number=2, actor=designer)
    assert workflow_entries(workflow) == []


def test_deleting_the_workflow_removes_its_entries(workflow: Workflow, designer: Any) -> None:
    other = services.workflow_create(actor=designer, name="other")
    publish(other, schedule_graph(), designer)
    publish(workflow, schedule_graph(), designer)
    workflow_pk = workflow.pk
    services.workflow_delete(workflow=workflow)
    assert not PeriodicTask.objects.filter(name__startswith=f"workflow:{workflow_pk}:").exists()
    assert workflow_entries(other) == [f"workflow:{other.pk}:tick"]


# Transactional: beat's scheduler commits and closes connections between reads, which the
# test transaction of an ordinary database test would not survive.
@pytest.mark.django_db(transaction=True)
def test_beats_database_scheduler_fires_the_entry_on_the_configured_crontab(
    workflow: Workflow, designer: Any
) -> None:
    publish(workflow, schedule_graph(), designer)
    name = f"workflow:{workflow.pk}:tick"

    scheduler = DatabaseScheduler(app=app)
    entry = scheduler.schedule[name]

    assert entry.task == "workflows.run_scheduled"
    assert app.tasks[entry.task].name == run_scheduled_task.name  # a worker knows the task
    assert entry.kwargs == {"workflow_id": str(workflow.pk), "node_id": "tick"}
    assert entry.options["queue"] == "runs"
    assert isinstance(entry.schedule, crontab)
    configured = crontab(minute="*/15", hour="9-17", day_of_week="mon-fri")
    for field in ("minute", "hour", "day_of_week", "day_of_month", "month_of_year"):
        assert getattr(entry.schedule, field) == getattr(configured, field), field
    assert str(entry.schedule.tz) == ZONE
    # Read in Shanghai time: a Friday 17:50 there is followed by the Monday 09:00 firing.
    friday = datetime(2026, 5, 8, 17, 50, tzinfo=ZoneInfo(ZONE))
    last_run, forward, _now = entry.schedule.remaining_delta(friday)
    assert last_run + forward == datetime(2026, 5, 11, 9, 0, tzinfo=ZoneInfo(ZONE))


def test_a_firing_starts_a_schedule_run_that_executes_and_succeeds(
    workflow: Workflow, designer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    publish(workflow, schedule_graph(), designer)
    with django_capture_on_commit_callbacks() as enqueued:
        run_id = run_scheduled_task.apply(args=(str(workflow.pk), "tick")).get()
    assert len(enqueued) == 1  # the run is sent to a worker once its row is committed
    assert run_id is not None
    run = Run.objects.get(pk=run_id)
    assert (run.trigger_kind, run.trigger_node, run.status) == ("schedule", "tick", "queued")
    assert run.created_by is None
    assert run.version == workflow.versions.get()
    assert run.input["text"] == "日报"
    assert run.input["payload"] == {"cron": CRON, "timezone": ZONE}
    fired_at = datetime.fromisoformat(run.input["fired_at"])
    assert fired_at.utcoffset() == timedelta(hours=8)

    run = services.run_execute(run_id=str(run.pk))
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.output == f"日报|{run.input['fired_at']}|{CRON}"
    tick = NodeRun.objects.get(run=run, node_id="tick")
    assert tick.status == "succeeded"
    assert tick.outputs == run.input


def test_a_graph_with_two_triggers_runs_from_the_schedule_trigger_only(
    workflow: Workflow, designer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    publish(workflow, schedule_graph(manual=True), designer)  # the manual trigger comes first
    with django_capture_on_commit_callbacks():
        scheduled = services.run_scheduled(workflow_id=str(workflow.pk), node_id="tick")
    assert scheduled is not None
    run = services.run_execute(run_id=str(scheduled.pk))
    assert run.status == Run.Status.SUCCEEDED, run.error
    statuses = dict(NodeRun.objects.filter(run=run).values_list("node_id", "status"))
    assert statuses == {
        "start": "skipped",
        "tick": "succeeded",
        "greet": "succeeded",
        "done": "succeeded",
    }
    assert run.output.startswith("日报|")

    # A run by hand still enters through the first trigger, the manual one.
    with django_capture_on_commit_callbacks():
        manual = services.run_start(
            workflow=workflow, actor=designer, trigger_input={"text": "hi", "payload": {}}
        )
    statuses = dict(
        NodeRun.objects.filter(run=services.run_execute(run_id=str(manual.pk))).values_list(
            "node_id", "status"
        )
    )
    assert (statuses["start"], statuses["tick"]) == ("succeeded", "skipped")


def test_a_firing_of_a_schedule_no_longer_published_deletes_its_entry(
    workflow: Workflow, designer: Any
) -> None:
    publish(workflow, schedule_graph(), designer)
    kept = entry_for(workflow)
    # Left behind by hand (the admin), for a node the latest version does not have.
    PeriodicTask.objects.create(
        name=f"workflow:{workflow.pk}:gone", task="workflows.run_scheduled", crontab=kept.crontab
    )
    assert services.run_scheduled(workflow_id=str(workflow.pk), node_id="gone") is None
    assert workflow_entries(workflow) == [kept.name]

    # The workflow deleted without the service (its entries stay behind until they fire).
    Workflow.objects.filter(pk=workflow.pk).delete()
    assert run_scheduled_task.apply(args=(str(workflow.pk), "tick")).get() is None
    assert not PeriodicTask.objects.filter(pk=kept.pk).exists()
    assert not Run.objects.exists()
