from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from tests.workflows.graphs import edge, node
from workflows.engine.sensitive_words import WORD_LIST_RESOURCE, WordMatcher
from workflows.engine.validation import validate_graph
from workflows.nodes import registry
from workflows.nodes.base import NodeContext, NodeResult
from workflows.nodes.sensitive_word_filter import SensitiveWordFilter, SensitiveWordFilterConfig

POLITICS = WordMatcher(["法轮", "轮功", "Falun Gong"])
ABUSE = WordMatcher(["hello", "HE", "llo", "傻瓜", "bad word"])


def _run(
    config: dict[str, Any], text: str, lists: dict[str, WordMatcher] | None = None
) -> NodeResult:
    node_type = registry.get("sensitive_word_filter", 1)
    assert node_type is SensitiveWordFilter
    instance = node_type("filter", node_type.Config.model_validate(config))
    variables = {"trigger": {"text": text}, "conversation": {}, "nodes": {}, "vars": {}}
    resources = {(WORD_LIST_RESOURCE, name): m for name, m in (lists or {}).items()}
    return asyncio.run(instance.run(NodeContext(variables=variables, resources=resources)))


def test_masks_chinese_and_english_ignoring_letter_case() -> None:
    result = _run(
        {"word_lists": ["politics", "abuse"]},
        "他说FALUN gong和傻瓜, bad word!",
        {"politics": POLITICS, "abuse": ABUSE},
    )
    assert result.branch == "out"
    assert result.outputs == {
        "text": "他说**********和**, ********!",
        "matches": ["Falun Gong", "傻瓜", "bad word"],
        "blocked": False,
    }


def test_overlapping_words_are_masked_whole_and_the_longest_is_reported() -> None:
    result = _run(
        {"word_lists": ["politics", "abuse"], "mask_char": "#"},
        "练法轮功的人说 Hello",
        {"politics": POLITICS, "abuse": ABUSE},
    )
    # 法轮 and 轮功 overlap: both are reported, the union is masked; he and llo lie in hello.
    assert result.outputs["text"] == "练###的人说 #####"
    assert result.outputs["matches"] == ["法轮", "轮功", "hello"]


def test_extra_words_work_alone_and_the_text_is_a_template() -> None:
    result = _run({"text": "{{ trigger.text }} 再见", "extra_words": [" 再见 ", "Bye"]}, "bye-bye")
    assert result.outputs == {"text": "***-*** **", "matches": ["Bye", "再见"], "blocked": False}


def test_clean_text_goes_out_unchanged() -> None:
    result = _run({"word_lists": ["abuse"], "mode": "block"}, "你好，世界", {"abuse": ABUSE})
    assert result.branch == "out"
    assert result.outputs == {"text": "你好，世界", "matches": [], "blocked": False}


def test_block_mode_takes_the_blocked_branch_with_the_original_text() -> None:
    result = _run({"word_lists": ["abuse"], "mode": "block"}, "你这个傻瓜", {"abuse": ABUSE})
    assert result.branch == "blocked"
    assert result.outputs == {"text": "你这个傻瓜", "matches": ["傻瓜"], "blocked": True}


def test_an_unknown_or_disabled_list_fails_the_node_naming_it() -> None:
    result = _run({"word_lists": ["abuse", "广告"]}, "hello", {"abuse": ABUSE})
    assert result.failed
    assert result.error == "sensitive word list '广告' does not exist or is disabled"


def test_a_template_error_fails_the_node() -> None:
    result = _run({"text": "{{ trigger.text | nosuchfilter }}", "extra_words": ["x"]}, "x")
    assert result.error is not None
    assert result.error.startswith("text ")


def test_branches_resources_and_defaults_follow_the_config() -> None:
    mask = SensitiveWordFilterConfig.model_validate({"word_lists": [" a "]})
    block = SensitiveWordFilterConfig.model_validate({"word_lists": ["a", "b"], "mode": "block"})
    assert (mask.text, mask.mode, mask.mask_char, mask.word_lists) == (
        "{{ trigger.text }}",
        "mask",
        "*",
        ["a"],
    )
    assert SensitiveWordFilter.branches(mask) == ["out"]
    assert SensitiveWordFilter.required_branches(mask) == []
    assert SensitiveWordFilter.branches(block) == ["out", "blocked"]
    assert SensitiveWordFilter.required_branches(block) == ["blocked"]
    assert SensitiveWordFilter.required_resources(block) == [
        (WORD_LIST_RESOURCE, "a"),
        (WORD_LIST_RESOURCE, "b"),
    ]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"word_lists": [], "extra_words": []},
        {"word_lists": ["a", "a"]},
        {"word_lists": [" "]},
        {"word_lists": ["a"], "mode": "replace"},
        {"word_lists": ["a"], "mask_char": "**"},
        {"word_lists": ["a"], "mask_char": ""},
        {"extra_words": ["x" * 101]},
        {"extra_words": ["ok", "  "]},
        {"word_lists": ["a"], "lists": ["b"]},
    ],
)
def test_invalid_configs_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SensitiveWordFilterConfig.model_validate(config)


def _graph(mode: str, *, connect_blocked: bool) -> dict[str, Any]:
    edges = [edge("start", "filter"), edge("filter", "done")]
    if connect_blocked:
        edges.append(edge("filter", "refuse", "blocked"))
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            node("filter", "sensitive_word_filter", word_lists=["abuse"], mode=mode),
            node("done", "end", output="{{ nodes.filter.text }}"),
            node("refuse", "end", output="{{ nodes.filter.matches }}"),
        ],
        "edges": edges,
        "variables": {},
    }


def test_validation_requires_the_blocked_branch_in_block_mode_only() -> None:
    problems = validate_graph(_graph("block", connect_blocked=False)).problems
    assert ("unconnected_branch", "filter", "branches.blocked") in [
        (p.code, p.node_id, p.field) for p in problems
    ]
    assert validate_graph(_graph("block", connect_blocked=True)).ok
    # In mask mode there is no 'blocked' output to connect.
    problems = validate_graph(_graph("mask", connect_blocked=True)).problems
    assert ("dangling_edge", "filter", "source_handle") in [
        (p.code, p.node_id, p.field) for p in problems
    ]


def test_validation_checks_list_names_against_those_the_caller_knows() -> None:
    graph = _graph("block", connect_blocked=True)
    assert validate_graph(graph, resources={WORD_LIST_RESOURCE: {"abuse"}}).ok
    problems = validate_graph(graph, resources={WORD_LIST_RESOURCE: {"politics"}}).problems
    assert [(p.code, p.node_id, p.message) for p in problems] == [
        (
            "unknown_resource",
            "filter",
            "sensitive word list 'abuse' does not exist or is not available to you "
            "(disabled, or not shared with you for use)",
        )
    ]
