"""Signed webhook triggers, through the real URL: signature, freshness, replay, body checks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from assistant_site.roles import DESIGNER
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.models import Credential, Run, Workflow
from workflows.nodes.webhook_trigger import signature_for

KEY = "whsec_7f3a9c1e"


def hook_graph(credential: str = "orders-hook") -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [
            node("hook", "webhook_trigger", credential=credential),
            node("say", "template", template="订单 {{ nodes.hook.payload.order }}"),
            node("done", "end", output="{{ nodes.say.text }}"),
        ],
        "edges": [edge("hook", "say"), edge("say", "done")],
        "variables": {},
    }


@pytest.fixture
def designer(make_user: Callable[..., Any]) -> Any:
    return make_user("designer", roles=(DESIGNER,))


@pytest.fixture
def workflow(designer: Any) -> Workflow:
    api = Client()
    api.force_login(designer)
    services.credential_create(actor=designer, data={"name": "orders-hook", "value": KEY})
    created = api.post("/api/workflows/create/", {"name": "订单"}, content_type="application/json")
    workflow = Workflow.objects.get(pk=created.json()["id"])
    api.post(
        f"/api/workflows/{workflow.pk}/draft/save/",
        {"graph": hook_graph(), "base_revision": 0},
        content_type="application/json",
    )
    assert api.post(f"/api/workflows/{workflow.pk}/publish/").status_code == 201
    return workflow


def _post(
    workflow: Workflow,
    body: bytes,
    *,
    key: str = KEY,
    timestamp: str | None = None,
    node_id: str = "hook",
    signature: str | None = None,
) -> Any:
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    headers = {
        "X-Timestamp": timestamp,
        "X-Signature": signature or signature_for(key, timestamp, body),
    }
    return Client().post(  # no login: the signature is the authentication
        f"/api/workflows/{workflow.pk}/hooks/{node_id}/",
        body,
        content_type="application/json",
        headers=headers,
    )


def test_a_signed_request_starts_a_run_of_the_published_version(
    workflow: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    body = json.dumps({"text": "新订单", "order": 42}, ensure_ascii=False).encode()
    response = _post(workflow, body)
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run"])
    assert run.trigger_kind == "webhook"
    assert run.trigger_node == "hook"
    assert run.version is not None
    assert run.input["text"] == "新订单"
    assert run.input["payload"] == {"text": "新订单", "order": 42}
    assert run.created_by is None


def test_the_run_reads_the_posted_document(
    workflow: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    run_id = _post(workflow, b'{"order": 42}').json()["run"]
    assert services.run_execute(run_id=run_id).output == "订单 42"


def test_a_repeated_delivery_starts_one_run(workflow: Workflow) -> None:
    body, timestamp = b'{"order": 1}', str(int(time.time()))
    assert _post(workflow, body, timestamp=timestamp).status_code == 202
    again = _post(workflow, body, timestamp=timestamp)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert Run.objects.filter(workflow=workflow).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"key": "wrong key"}, 401, "X-Signature"),
        ({"signature": "sha256=deadbeef"}, 401, "X-Signature"),
        ({"timestamp": str(int(time.time()) - 3600)}, 401, "X-Timestamp"),
        ({"timestamp": "soon"}, 401, "X-Timestamp"),
        ({"node_id": "nothere"}, 404, "url"),
    ],
)
def test_refusals_name_what_is_wrong_and_start_nothing(
    workflow: Workflow, kwargs: dict[str, Any], status: int, field: str
) -> None:
    response = _post(workflow, b'{"order": 1}', **kwargs)
    assert response.status_code == status
    assert response.json()["field"] == field
    assert response.json()["detail"]
    assert not Run.objects.filter(workflow=workflow).exists()


def test_a_missing_signature_header_is_refused(workflow: Workflow) -> None:
    response = Client().post(
        f"/api/workflows/{workflow.pk}/hooks/hook/",
        b"{}",
        content_type="application/json",
        headers={"X-Timestamp": str(int(time.time()))},
    )
    assert response.status_code == 401
    assert response.json()["field"] == "X-Signature"


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not json", "not JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "not JSON")],
)
def test_a_signed_body_that_is_not_a_json_object_is_refused(
    workflow: Workflow, body: bytes, message: str
) -> None:
    response = _post(workflow, body)
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert message in response.json()["detail"]


def test_an_oversized_body_is_refused(workflow: Workflow) -> None:
    body = json.dumps({"blob": "x" * 1_000_001}).encode()
    response = _post(workflow, body)
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_an_unknown_workflow_answers_404(db: None) -> None:
    response = Client().post(
        "/api/workflows/00000000-0000-0000-0000-000000000000/hooks/hook/",
        b"{}",
        content_type="application/json",
    )
    assert response.status_code == 404


def test_a_deleted_signing_key_is_reported_not_guessed(workflow: Workflow) -> None:
    Credential.objects.filter(name="orders-hook").delete()
    response = _post(workflow, b"{}")
    assert response.status_code == 503
    assert response.json()["field"] == "credential"
    assert "orders-hook" in response.json()["detail"]


def _signed_get(url: str, key: str = KEY) -> Any:
    timestamp = str(int(time.time()))
    headers = {"X-Timestamp": timestamp, "X-Signature": signature_for(key, timestamp, b"")}
    return Client().get(url, headers=headers)


def test_the_status_url_answers_the_run_s_output_to_signed_requests_only(
    workflow: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    started = _post(workflow, b'{"order": 7}').json()
    assert started["status"] == "queued"
    status_url = started["status_url"]
    assert status_url.endswith(f"/hooks/hook/runs/{started['run']}/")
    assert _signed_get(status_url).json()["status"] == "queued"
    services.run_execute(run_id=started["run"])
    done = _signed_get(status_url)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["output"]) == ("succeeded", "订单 7")
    forged = _signed_get(status_url, key="wrong key")
    assert (forged.status_code, forged.json()["field"]) == (401, "X-Signature")
    unknown = _signed_get(
        status_url.replace(started["run"], "00000000-0000-0000-0000-000000000000")
    )
    assert (unknown.status_code, unknown.json()["field"]) == (404, "run")


@pytest.mark.django_db(transaction=True)
def test_with_wait_the_answer_carries_the_run_s_output(
    workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Executed the moment it is queued, as a worker would pick it up.
    monkeypatch.setattr(
        services, "_enqueue_run", lambda run_id: services.run_execute(run_id=str(run_id))
    )
    timestamp = str(int(time.time()))
    body = b'{"order": 9}'
    response = Client().post(
        f"/api/workflows/{workflow.pk}/hooks/hook/?wait=10",
        body,
        content_type="application/json",
        headers={"X-Timestamp": timestamp, "X-Signature": signature_for(KEY, timestamp, body)},
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["output"]) == ("succeeded", "订单 9")


@pytest.mark.parametrize("wait", ["31", "-1", "soon"])
def test_a_bad_wait_is_refused_before_anything_starts(workflow: Workflow, wait: str) -> None:
    timestamp = str(int(time.time()))
    body = b'{"order": 9}'
    response = Client().post(
        f"/api/workflows/{workflow.pk}/hooks/hook/?wait={wait}",
        body,
        content_type="application/json",
        headers={"X-Timestamp": timestamp, "X-Signature": signature_for(KEY, timestamp, body)},
    )
    assert (response.status_code, response.json()["field"]) == (400, "wait")
    assert not Run.objects.filter(workflow=workflow).exists()


def test_a_run_that_does_not_finish_within_the_wait_answers_202_with_the_status_url(
    workflow: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    timestamp = str(int(time.time()))
    body = b'{"order": 3}'
    response = Client().post(
        f"/api/workflows/{workflow.pk}/hooks/hook/?wait=0.3",
        body,
        content_type="application/json",
        headers={"X-Timestamp": timestamp, "X-Signature": signature_for(KEY, timestamp, body)},
    )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.json()["status_url"]
