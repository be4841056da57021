"""The demo content the run command publishes: it loads, it is idempotent, and it answers."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from assistant_site.roles import ADMINISTRATOR
from knowledge.models import KnowledgeBase
from workflows import services
from workflows.models import Run, Workflow
from workflows.nodes.message_trigger import ChatMessage


def _load() -> str:
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def _admin(make_user: Callable[..., Any]) -> Any:
    return make_user("admin", roles=(ADMINISTRATOR,), is_superuser=True, is_staff=True)


def test_publishes_the_three_demo_workflows_once(make_user: Callable[..., Any]) -> None:
    admin = _admin(make_user)
    assert "Demo workflows published" in _load()
    workflows = Workflow.objects.filter(created_by=admin)
    assert workflows.count() == 3
    assert all(workflow.versions.count() == 1 for workflow in workflows)
    assert KnowledgeBase.objects.filter(name=services.DEMO_KNOWLEDGE_BASE).count() == 1
    assert PeriodicTask.objects.filter(name__startswith="workflow:").count() == 1
    assert _load().strip() == "Demo workflows exist already."
    assert Workflow.objects.count() == 3


def _answer(workflow: Workflow, text: str) -> str:
    message = ChatMessage(text=text, chat_id="c", user_id="u")
    outcome = services.message_receive(workflow=workflow, message=message)
    assert outcome.run is not None, outcome.reason
    run = services.run_execute(run_id=str(outcome.run.pk))
    assert run.status == Run.Status.SUCCEEDED, run.error
    replies = [
        n.outputs["text"] for n in run.node_runs.filter(node_type="reply", status="succeeded")
    ]
    assert len(replies) == 1
    return str(replies[0])


def test_the_qa_demo_answers_with_passages_until_a_model_is_chosen(
    make_user: Callable[..., Any],
) -> None:
    _admin(make_user)
    _load()
    workflow = Workflow.objects.get(name__contains="Knowledge Q&A")
    reply = _answer(workflow, "年假有几天？")
    assert "尚未配置模型" in reply
    assert "nothing relevant in the knowledge base" in reply


def test_the_intent_demo_routes_by_rule(make_user: Callable[..., Any]) -> None:
    _admin(make_user)
    _load()
    workflow = Workflow.objects.get(name__contains="Intent")
    assert _answer(workflow, "你好").startswith("您好！")
    assert _answer(workflow, "随便聊聊").startswith("我能帮您查询订单")
