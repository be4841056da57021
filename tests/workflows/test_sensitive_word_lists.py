"""Sensitive word lists: managed in the admin, loaded by the runner for the filter node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from assistant_site.crypto import MASK
from assistant_site.roles import ADMINISTRATOR, DESIGNER
from audit.models import AuditEntry
from tests.workflows.graphs import edge, node
from workflows import services
from workflows.engine.sensitive_words import MAX_WORDS
from workflows.models import Run, SensitiveWordList, Workflow
from workflows.nodes import sensitive_word_filter

FILTER = sensitive_word_filter.SensitiveWordFilter.type_id
ADD_URL = "/admin/workflows/sensitivewordlist/add/"


@pytest.fixture
def admin_client(make_user: Callable[..., Any]) -> Client:
    client = Client()
    client.force_login(make_user("admin", roles=(ADMINISTRATOR,)))
    return client


def _form(**fields: Any) -> dict[str, Any]:
    return {"name": "辱骂", "description": "", "enabled": "on", "words": "", **fields}


def _errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    errors: dict[str, list[str]] = response.context["adminform"].form.errors
    return errors


def test_the_admin_stores_words_stripped_without_blanks_or_repeats(admin_client: Client) -> None:
    response = admin_client.post(
        ADD_URL, _form(words="  傻瓜 \r\n\r\nIdiot\r\nidiot\r\n笨蛋\r\n傻瓜")
    )
    assert response.status_code == 302
    stored = SensitiveWordList.objects.get(name="辱骂")
    assert stored.words == "傻瓜\nIdiot\n笨蛋"
    listing = admin_client.get("/admin/workflows/sensitivewordlist/").content.decode()
    assert "辱骂" in listing
    assert '<td class="field-word_count">3</td>' in listing
    # The trail records the list, but not a copy of every word.
    entry = AuditEntry.objects.get(action="object.create", target_repr="辱骂")
    assert entry.changes["name"] == [None, "辱骂"]
    assert entry.changes["words"] == [None, MASK]
    assert "傻瓜" not in str(entry.changes)
    # The form posts as multipart (it has a file field): words travel as plain UTF-8.
    page = admin_client.get(f"/admin/workflows/sensitivewordlist/{stored.pk}/change/")
    assert 'enctype="multipart/form-data"' in page.content.decode()
    assert "Idiot" in page.content.decode()


def test_the_admin_refuses_too_long_words_and_too_many_words(admin_client: Client) -> None:
    errors = _errors(admin_client.post(ADD_URL, _form(words="ok\n" + "长" * 101)))
    assert errors["words"] == [
        "1 word(s) longer than 100 characters: 长长长长长长长长长长长长长长长长长长长长… (101)."
    ]
    many = "\n".join(f"w{i}" for i in range(MAX_WORDS + 1))
    errors = _errors(admin_client.post(ADD_URL, _form(words=many)))
    assert errors["words"] == ["100,001 words: a list holds at most 100,000."]
    assert not SensitiveWordList.objects.exists()


def test_an_uploaded_file_replaces_the_words(admin_client: Client) -> None:
    upload = SimpleUploadedFile("words.txt", "\ufeff赌博\nCasino\n\n".encode())
    response = admin_client.post(ADD_URL, _form(words="ignored", upload=upload))
    assert response.status_code == 302
    assert SensitiveWordList.objects.get().words == "赌博\nCasino"
    latin1 = SimpleUploadedFile("words.txt", "café".encode("latin-1"))
    errors = _errors(admin_client.post(ADD_URL, _form(name="other", upload=latin1)))
    assert errors["upload"] == ["The file is not UTF-8 text."]


def _filter_graph(mode: str = "mask") -> dict[str, Any]:
    graph: dict[str, Any] = {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("filter", FILTER, word_lists=["辱骂"], mode=mode),
            node("done", "end", output="{{ nodes.filter.text }}"),
        ],
        "edges": [edge("start", "filter"), edge("filter", "done")],
        "variables": {},
    }
    if mode == "block":
        refuse = node("refuse", "end", output="blocked: {{ nodes.filter.matches | join(',') }}")
        graph["nodes"].append(refuse)
        graph["edges"].append(edge("filter", "refuse", "blocked"))
    return graph


def _run(workflow: Workflow, graph: dict[str, Any], text: str) -> Run:
    run = Run.objects.create(workflow=workflow, graph=graph, input={"text": text})
    return services.run_execute(run_id=str(run.pk))


@pytest.mark.django_db
def test_runs_use_the_admin_managed_list_and_see_its_changes(
    admin_client: Client, make_user: Callable[..., Any]
) -> None:
    admin_client.post(ADD_URL, _form(words="傻瓜\nIdiot"))
    word_list = SensitiveWordList.objects.get(name="辱骂")
    workflow = services.workflow_create(actor=make_user(roles=(DESIGNER,)), name="客服")

    run = _run(workflow, _filter_graph(), "你这个IDIOT，真是傻瓜")
    assert (run.status, run.output) == ("succeeded", "你这个*****，真是**")
    node_run = run.node_runs.get(node_id="filter")
    assert node_run.outputs["matches"] == ["Idiot", "傻瓜"]

    response = admin_client.post(
        f"/admin/workflows/sensitivewordlist/{word_list.pk}/change/", _form(words="笨蛋")
    )
    assert response.status_code == 302
    update = AuditEntry.objects.get(action="object.update", target_repr="辱骂")
    assert update.changes["words"] == [MASK, MASK]
    run = _run(workflow, _filter_graph(), "傻瓜和笨蛋")
    assert run.output == "傻瓜和**"

    run = _run(workflow, _filter_graph("block"), "笨蛋")
    assert (run.status, run.output) == ("succeeded", "blocked: 笨蛋")
    assert run.node_runs.get(node_id="filter").branch == "blocked"


@pytest.mark.django_db
def test_a_disabled_or_unknown_list_fails_the_run_and_the_validation(
    make_user: Callable[..., Any],
) -> None:
    SensitiveWordList.objects.create(name="辱骂", words="傻瓜", enabled=False)
    workflow = services.workflow_create(actor=make_user(roles=(DESIGNER,)), name="客服")

    run = _run(workflow, _filter_graph(), "傻瓜")
    assert run.status == "failed"
    assert "sensitive word list '辱骂' does not exist or is disabled" in run.error
    assert run.node_runs.get(node_id="filter").status == "failed"

    problems = services.workflow_validate(graph=_filter_graph())
    assert [(p["code"], p["node_id"]) for p in problems] == [("unknown_resource", "filter")]
    SensitiveWordList.objects.filter(name="辱骂").update(enabled=True)
    assert services.workflow_validate(graph=_filter_graph()) == []
