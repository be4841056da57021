from __future__ import annotations

import time

import pytest

from workflows.engine import templates
from workflows.engine.templates import TemplateError, references, render


def test_renders_chinese_text_from_the_context() -> None:
    assert render("{{ trigger.text }}，收到", {"trigger": {"text": "你好"}}) == "你好，收到"


def test_lists_the_variables_a_template_reads() -> None:
    source = (
        "{{ trigger.text }}{% for p in nodes.kb.passages %}{{ p.title }}{% endfor %}"
        "{% set n = 1 %}{{ n }}{{ nodes['llm'].text | upper }}"
    )
    assert [r.path for r in references(source)] == [
        ("trigger", "text"),
        ("nodes", "kb", "passages"),
        ("nodes", "llm", "text"),
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__.__mro__ }}", "not allowed"),
        ("{{ 'x' * 10**9 }}", "too large"),
        ("{{ 9 ** 100000 }}", "exponent is too large"),
        ("{% for i in range(10) %}{{ 'y' * 30000 }}{% endfor %}", "output is longer"),
    ],
)
def test_the_sandbox_refuses_escapes_and_huge_results(source: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        render(source, {})


def test_a_runaway_loop_is_stopped_by_the_time_budget() -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than"):
        render("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", {})
    assert time.monotonic() - started < templates.RENDER_BUDGET_S * 4


def test_errors_carry_the_template_line() -> None:
    with pytest.raises(TemplateError) as failure:
        render("one\ntwo\n{{ nope.x }}", {})
    assert failure.value.line == 3
    with pytest.raises(TemplateError) as syntax:
        render("one\n{% if %}", {})
    assert syntax.value.line == 2


def test_an_oversized_template_is_refused_before_parsing() -> None:
    with pytest.raises(TemplateError, match="longer than 20000"):
        references("x" * (templates.MAX_SOURCE_CHARS + 1))
