"""Chat messages offered to a published workflow: trigger filters, conversations and their
memory, and the per-user rate limit (real Redis, real PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from assistant_site.celery import app
from assistant_site.roles import DESIGNER, VIEWER
from tests.workflows.graphs import edge, node
from workflows.models import Conversation, ConversationMessage, Run, Workflow

MEMORY = (
    "{% for m in conversation.history %}{{ m.role }}:{{ m.text }} | {% endfor %}"
    "now: {{ nodes.start.text }}"
)


def chat_graph(**settings: Any) -> dict[str, Any]:
    """message -> reply "re: <text>" -> end, whose output shows the memory the run read."""
    return {
        "format_version": 1,
        "settings": settings,
        "nodes": [
            node("start", "message_trigger", command_prefix=""),
            node("answer", "reply", text="re: {{ nodes.start.text }}"),
            node("done", "end", output=MEMORY),
        ],
        "edges": [edge("start", "answer"), edge("answer", "done")],
        "variables": {},
    }


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def api(designer: Any) -> Client:
    client = Client()
    client.force_login(designer)
    return client


@pytest.fixture
def eager_runs() -> Iterator[None]:
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


def _publish(api: Client, graph: dict[str, Any]) -> Workflow:
    created = api.post("/api/workflows/create/", {"name": "客服"}, content_type="application/json")
    workflow = Workflow.objects.get(pk=created.json()["id"])
    saved = api.post(
        f"/api/workflows/{workflow.pk}/draft/save/",
        {"graph": graph, "base_revision": 0},
        content_type="application/json",
    )
    assert saved.json()["problems"] == []
    published = api.post(
        f"/api/workflows/{workflow.pk}/publish/", {}, content_type="application/json"
    )
    assert published.status_code == 201, published.json()
    return workflow


def _send(api: Client, workflow: Workflow, text: str, **fields: Any) -> Any:
    message = {"text": text, "chat_id": "chat-1", "user_id": "u-1", **fields}
    return api.post(
        f"/api/workflows/{workflow.pk}/messages/", message, content_type="application/json"
    )


def _metric(name: str) -> float:
    body = Client().get("/metrics").content.decode()
    for line in body.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_message_starts_a_run_in_its_conversation(
    api: Client, eager_runs: None, django_capture_on_commit_callbacks: Any
) -> None:
    workflow = _publish(api, chat_graph())
    with django_capture_on_commit_callbacks(execute=True):
        response = _send(api, workflow, "你好", user_name="王小明", channel="connector:3")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "started"
    run = Run.objects.get(pk=body["run"])
    assert run.status == Run.Status.SUCCEEDED
    assert run.trigger_kind == "message"
    assert run.trigger_node == "start"
    assert run.output == "now: 你好"
    conversation = Conversation.objects.get(pk=body["conversation"])
    assert (conversation.channel, conversation.chat_id, conversation.end_user_id) == (
        "connector:3",
        "chat-1",
        "u-1",
    )
    assert list(conversation.messages.values_list("role", "text")) == [
        ("user", "你好"),
        ("assistant", "re: 你好"),
    ]


def test_later_runs_read_the_earlier_turns_of_the_conversation(
    api: Client, eager_runs: None, django_capture_on_commit_callbacks: Any
) -> None:
    workflow = _publish(api, chat_graph())
    for text in ("第一句", "second"):
        with django_capture_on_commit_callbacks(execute=True):
            _send(api, workflow, text)
    with django_capture_on_commit_callbacks(execute=True):
        run_id = _send(api, workflow, "第三句").json()["run"]
    assert Run.objects.get(pk=run_id).output == (
        "user:第一句 | assistant:re: 第一句 | user:second | assistant:re: second | now: 第三句"
    )
    # Another person in the same chat has a memory of their own.
    with django_capture_on_commit_callbacks(execute=True):
        other = _send(api, workflow, "hi", user_id="u-2").json()["run"]
    assert Run.objects.get(pk=other).output == "now: hi"


def test_memory_keeps_only_the_last_turns(
    api: Client, eager_runs: None, django_capture_on_commit_callbacks: Any
) -> None:
    workflow = _publish(api, chat_graph(memory_turns=1))
    for text in ("one", "two"):
        with django_capture_on_commit_callbacks(execute=True):
            _send(api, workflow, text)
    with django_capture_on_commit_callbacks(execute=True):
        run_id = _send(api, workflow, "three").json()["run"]
    assert Run.objects.get(pk=run_id).output == "user:two | assistant:re: two | now: three"


def test_a_group_message_without_a_mention_starts_nothing(api: Client) -> None:
    workflow = _publish(api, chat_graph())
    before = _metric('assistant_messages_received_total{outcome="ignored"}')
    response = _send(api, workflow, "大家好", chat_type="group")
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert "@-mentioned" in response.json()["reason"]
    assert not Run.objects.filter(workflow=workflow).exists()
    assert not Conversation.objects.filter(workflow=workflow).exists()
    assert _metric('assistant_messages_received_total{outcome="ignored"}') == before + 1
    assert _send(api, workflow, "大家好", chat_type="group", mentioned=True).status_code == 202


def test_the_first_trigger_accepting_the_message_starts_the_run(api: Client) -> None:
    graph = chat_graph()
    graph["nodes"][0]["config"]["command_prefix"] = "/ask"
    graph["nodes"].append(node("help", "message_trigger", command_prefix="/help"))
    graph["nodes"].append(node("help_text", "reply", text="Try /ask <question>"))
    graph["edges"].append(edge("help", "help_text"))
    workflow = _publish(api, graph)
    assert _send(api, workflow, "hello").json()["status"] == "ignored"
    started = _send(api, workflow, "/help")
    assert Run.objects.get(pk=started.json()["run"]).trigger_node == "help"
    started = _send(api, workflow, "/ask 几点了")
    assert Run.objects.get(pk=started.json()["run"]).trigger_node == "start"


def test_over_the_rate_limit_the_sender_gets_the_polite_reply_and_no_run(
    api: Client, redis_url: str
) -> None:
    limit = {"enabled": True, "burst": 2, "per_minute": 1, "message": "慢一点，请稍后再试"}
    workflow = _publish(api, chat_graph(rate_limit=limit))
    before = _metric('assistant_messages_received_total{outcome="rate_limited"}')
    assert [_send(api, workflow, "x").status_code for _ in range(2)] == [202, 202]
    refused = _send(api, workflow, "x")
    assert refused.status_code == 429
    assert refused.json()["status"] == "rate_limited"
    assert refused.json()["reply"] == "慢一点，请稍后再试"
    assert int(refused.headers["Retry-After"]) >= 1
    assert Run.objects.filter(workflow=workflow).count() == 2
    assert ConversationMessage.objects.filter(conversation__workflow=workflow).count() == 2
    assert _metric('assistant_messages_received_total{outcome="rate_limited"}') == before + 1
    # The limit is per end user: someone else in the same chat is still answered.
    assert _send(api, workflow, "x", user_id="u-2").status_code == 202


def test_the_bucket_refills_with_time(api: Client, redis_url: str) -> None:
    limit = {"enabled": True, "burst": 1, "per_minute": 600}  # one token every 0.1 s
    workflow = _publish(api, chat_graph(rate_limit=limit))
    assert _send(api, workflow, "x").status_code == 202
    assert _send(api, workflow, "x").status_code == 429
    time.sleep(0.25)
    assert _send(api, workflow, "x").status_code == 202


def test_a_pinned_version_answers_with_that_version(api: Client) -> None:
    workflow = _publish(api, chat_graph())
    response = _send(api, workflow, "x", version="1")
    assert Run.objects.get(pk=response.json()["run"]).version.number == 1  # type: ignore[union-attr]
    missing = _send(api, workflow, "x", version="9")
    assert missing.status_code == 400
    assert "version" in missing.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"chat_id": ""}, "chat_id"),
        ({"user_id": None}, "user_id"),
        ({"chat_type": "channel"}, "chat_type"),
        ({"text": "x" * 20_001}, "text"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_field(
    api: Client, change: dict[str, Any], field: str
) -> None:
    workflow = _publish(api, chat_graph())
    message = {"text": "x", "chat_id": "c", "user_id": "u", **change}
    response = api.post(
        f"/api/workflows/{workflow.pk}/messages/", message, content_type="application/json"
    )
    assert response.status_code == 400
    assert field in response.json()
    assert not Run.objects.filter(workflow=workflow).exists()


def test_an_unpublished_workflow_is_refused(api: Client) -> None:
    created = api.post("/api/workflows/create/", {"name": "w"}, content_type="application/json")
    workflow = Workflow.objects.get(pk=created.json()["id"])
    response = _send(api, workflow, "x")
    assert response.status_code == 400
    assert "publish" in response.json()["version"][0]


def test_viewers_may_not_send_and_strangers_do_not_see_the_workflow(
    api: Client, make_user: Callable[..., Any]
) -> None:
    workflow = _publish(api, chat_graph())
    viewer, stranger = Client(), Client()
    viewer.force_login(make_user("viewer", roles=(VIEWER,)))
    stranger.force_login(make_user("stranger"))
    assert _send(viewer, workflow, "x").status_code == 403
    assert _send(stranger, workflow, "x").status_code == 404
    assert not Run.objects.filter(workflow=workflow).exists()
