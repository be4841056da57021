"""LLM nodes in published workflows, end to end against the vLLM protocol double: the "use"
permission, streamed tokens in the live trace, token accounting, hot switching of an
endpoint without restarts, and probes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from assistant_site.roles import ADMINISTRATOR, DESIGNER, OPERATOR
from assistant_site.routing import websocket_urlpatterns
from audit.models import AuditEntry
from tests.conftest import free_port
from tests.doubles.vllm_server import VllmDouble
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.exceptions import WorkflowInvalidError
from workflows.models import ModelEndpoint, Run, Workflow


def llm_graph(endpoint: str = "qwen") -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("answer", "llm", endpoints=[endpoint], system_prompt="简短回答。", stream=True),
            node("done", "end", output="{{ nodes.answer.text }}"),
        ],
        "edges": [edge("start", "answer"), edge("answer", "done")],
        "variables": {},
    }


@pytest.fixture
def admin_api(make_user: Callable[..., Any]) -> Client:
    client = Client()
    client.force_login(make_user("ops-admin", roles=(ADMINISTRATOR,)))
    return client


@pytest.fixture
def endpoint(admin_api: Client, vllm_double: VllmDouble) -> ModelEndpoint:
    response = admin_api.post(
        "/api/model-endpoints/create/",
        {
            "name": "qwen",
            "kind": "chat",
            "base_url": vllm_double.base_url,
            "model": vllm_double.model,
            "timeout_s": 10,
            "default_params": {"temperature": 0.2},
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return ModelEndpoint.objects.get(name="qwen")


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    # The test executes runs itself: nothing goes to the broker.
    runs: list[Any] = []
    monkeypatch.setattr(services, "_enqueue_run", runs.append)
    return runs


def _published(designer: Any, graph: dict[str, Any]) -> Workflow:
    workflow = services.workflow_create(actor=designer, name="问答")
    services.workflow_draft_save(workflow=workflow, graph=graph, base_revision=0)
    workflow.refresh_from_db()
    services.workflow_publish(workflow=workflow, actor=designer)
    return workflow


def _share_use(admin_api: Client, endpoint: ModelEndpoint, username: str) -> None:
    response = admin_api.post(
        f"/api/sharing/workflows.modelendpoint/{endpoint.pk}/grant/",
        {"permission": "use", "user": username},
        content_type="application/json",
    )
    assert response.status_code in {200, 201}, response.content


def test_publishing_needs_the_use_permission_on_the_endpoint(
    admin_api: Client, endpoint: ModelEndpoint, make_user: Callable[..., Any]
) -> None:
    # Designers may use every endpoint through their role; anyone else only where shared.
    author = make_user("author")
    workflow = services.workflow_create(actor=author, name="问答")
    services.workflow_draft_save(workflow=workflow, graph=llm_graph(), base_revision=0)
    workflow.refresh_from_db()
    with pytest.raises(WorkflowInvalidError) as refused:
        services.workflow_publish(workflow=workflow, actor=author)
    [problem] = refused.value.problems
    assert (problem["code"], problem["node_id"]) == ("unknown_resource", "answer")
    assert "'qwen'" in problem["message"]
    _share_use(admin_api, endpoint, "author")
    assert services.workflow_publish(workflow=workflow, actor=author).number == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_streams_tokens_and_records_usage(
    endpoint: ModelEndpoint, designer: Any, vllm_double: VllmDouble, queued: list[Any]
) -> None:
    vllm_double.reply = "北京是中国的首都。"
    workflow = _published(designer, llm_graph())
    run = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "首都？"})

    async def watch() -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/runs/{run.pk}/"
        )
        communicator.scope["user"] = designer
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from(timeout=5)  # snapshot
        await database_sync_to_async(services.run_execute)(run_id=str(run.pk))
        events = []
        while True:
            message = await communicator.receive_json_from(timeout=5)
            events.append(message["event"])
            if message["event"]["kind"] == "run_finished":
                break
        await communicator.disconnect()
        return events

    events = asyncio.run(watch())
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.output == "北京是中国的首都。"
    deltas = [e["outputs"]["delta"] for e in events if e["kind"] == "node_delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == run.output
    answer = run.node_runs.get(node_id="answer")
    assert answer.tokens_in > 0
    assert answer.tokens_out == answer.outputs["tokens_out"] >= len(deltas)
    assert answer.outputs["attempts"][0]["outcome"] == "ok"
    sent = vllm_double.requests[-1]
    assert sent["temperature"] == 0.2  # the endpoint's default parameters
    assert sent["messages"][0] == {"role": "system", "content": "简短回答。"}


def test_an_edited_endpoint_is_used_by_the_next_run_without_a_restart(
    admin_api: Client, endpoint: ModelEndpoint, designer: Any, vllm_double: VllmDouble
) -> None:
    workflow = _published(designer, llm_graph())
    first = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "a"})
    services.run_execute(run_id=str(first.pk))
    with VllmDouble(model="qwen3-8b") as replacement:
        response = admin_api.patch(
            f"/api/model-endpoints/{endpoint.pk}/update/",
            {"base_url": replacement.base_url, "model": "qwen3-8b"},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        second = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "b"})
        services.run_execute(run_id=str(second.pk))
        assert [r["model"] for r in replacement.requests] == ["qwen3-8b"]
    assert len(vllm_double.requests) == 1
    second.refresh_from_db()
    assert second.node_runs.get(node_id="answer").outputs["model"] == "qwen3-8b"


def test_a_disabled_endpoint_fails_the_node_naming_it(
    endpoint: ModelEndpoint, designer: Any, vllm_double: VllmDouble
) -> None:
    workflow = _published(designer, llm_graph())
    endpoint.enabled = False
    endpoint.save()
    run = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "a"})
    run = services.run_execute(run_id=str(run.pk))
    assert run.status == Run.Status.FAILED
    assert "no model endpoint configured (qwen: missing or disabled)" in run.error
    assert vllm_double.requests == []


def test_a_probe_stores_and_audits_what_it_found(
    admin_api: Client, endpoint: ModelEndpoint, vllm_double: VllmDouble
) -> None:
    response = admin_api.post(f"/api/model-endpoints/{endpoint.pk}/probe/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["probe_status"] == "ok"
    assert vllm_double.model in body["probe_models"]
    assert body["probe_latency_ms"] > 0
    assert AuditEntry.objects.filter(action="model_endpoint.probe").count() == 1


def test_a_probe_of_a_dead_server_says_why(admin_api: Client, endpoint: ModelEndpoint) -> None:
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(
        base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    body = admin_api.post(f"/api/model-endpoints/{endpoint.pk}/probe/").json()
    assert body["probe_status"] == "down"
    assert body["probe_error"]


def test_operators_may_probe_and_strangers_do_not_see_the_endpoint(
    endpoint: ModelEndpoint, make_user: Callable[..., Any]
) -> None:
    operator, stranger = Client(), Client()
    operator.force_login(make_user("operator", roles=(OPERATOR,)))
    stranger.force_login(make_user("stranger"))
    assert operator.post(f"/api/model-endpoints/{endpoint.pk}/probe/").status_code == 200
    assert stranger.post(f"/api/model-endpoints/{endpoint.pk}/probe/").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [({"temperature": 5}, "temperature"), ({"guided_json": {}}, "guided_json"), ([], "value")],
)
def test_bad_default_parameters_are_refused_naming_the_field(
    admin_api: Client, endpoint: ModelEndpoint, params: Any, field: str
) -> None:
    response = admin_api.patch(
        f"/api/model-endpoints/{endpoint.pk}/update/",
        {"default_params": params},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert field in str(response.json()["default_params"])
    endpoint.refresh_from_db()
    assert endpoint.default_params == {"temperature": 0.2}


def _cached_graph(prompt: str = "{{ trigger.text }}") -> dict[str, Any]:
    graph = llm_graph()
    graph["nodes"][1]["config"].update(cache_ttl_s=3600, prompt=prompt)
    return graph


def _cache_metric(outcome: str) -> float:
    body = Client().get("/metrics").content.decode()
    for line in body.splitlines():
        if line.startswith(f'assistant_llm_cache_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_cached_answer_is_served_without_calling_the_model(
    endpoint: ModelEndpoint, designer: Any, vllm_double: VllmDouble, redis_url: str
) -> None:
    from django.core.cache import cache

    cache.clear()
    workflow = _published(designer, _cached_graph())
    hits = _cache_metric("hit")
    outputs = []
    for text in ("退货政策是什么？", "退货政策是什么？", "运费谁出？"):
        run = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": text})
        run = services.run_execute(run_id=str(run.pk))
        assert run.status == Run.Status.SUCCEEDED, run.error
        outputs.append(run.node_runs.get(node_id="answer"))
    assert [node_run.outputs["cached"] for node_run in outputs] == [False, True, False]
    assert outputs[1].outputs["text"] == outputs[0].outputs["text"]
    assert outputs[1].tokens_out == 0  # nothing was generated for it
    assert len(vllm_double.requests) == 2
    assert _cache_metric("hit") == hits + 1


def test_a_failure_is_never_cached(
    endpoint: ModelEndpoint, designer: Any, vllm_double: VllmDouble, redis_url: str
) -> None:
    from django.core.cache import cache

    cache.clear()
    workflow = _published(designer, _cached_graph())
    vllm_double.inject("context_length")
    for expected in (Run.Status.FAILED, Run.Status.SUCCEEDED):
        run = services.run_start(workflow=workflow, actor=designer, trigger_input={"text": "x"})
        assert services.run_execute(run_id=str(run.pk)).status == expected
    assert len(vllm_double.requests) == 2
