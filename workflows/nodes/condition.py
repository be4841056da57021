from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

ELSE_BRANCH = "else"
Operator = Literal[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
    "greater_than",
    "less_than",
    "matches_regex",
]
_NUMERIC = {"greater_than", "less_than"}
_UNARY = {"is_empty", "is_not_empty"}


class ConditionCase(NodeConfig):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", title="Branch id")
    left: str = Field(
        max_length=2000, title="Value", description="Template, e.g. {{ trigger.text }}"
    )
    operator: Operator = Field(title="Comparison")
    right: str = Field(default="", max_length=2000, title="Compared with (template)")


class ConditionConfig(NodeConfig):
    cases: list[ConditionCase] = Field(
        min_length=1,
        max_length=20,
        title="If / else if",
        description="Checked in order; the first true case's branch is followed, else 'else'.",
    )

    @field_validator("cases")
    @classmethod
    def _distinct_ids(cls, cases: list[ConditionCase]) -> list[ConditionCase]:
        ids = [case.id for case in cases]
        if len(set(ids)) != len(ids) or ELSE_BRANCH in ids:
            raise ValueError(f"branch ids must be distinct and not {ELSE_BRANCH!r}")
        return cases


class ComparisonError(Exception):
    pass


def compare(left: str, operator: Operator, right: str) -> bool:
    if operator in _NUMERIC:
        try:
            a, b = float(left), float(right)
        except ValueError:
            raise ComparisonError(f"{operator} needs numbers, got {left!r} and {right!r}") from None
        return a > b if operator == "greater_than" else a < b
    if operator == "matches_regex":
        try:
            return re.search(right, left) is not None
        except re.error as exc:
            raise ComparisonError(f"bad regular expression {right!r}: {exc}") from exc
    checks = {
        "equals": left == right,
        "not_equals": left != right,
        "contains": right in left,
        "not_contains": right not in left,
        "starts_with": left.startswith(right),
        "ends_with": left.endswith(right),
        "is_empty": not left.strip(),
        "is_not_empty": bool(left.strip()),
    }
    return checks[operator]


@register
class Condition(Node[ConditionConfig]):
    type_id = "condition"
    category = NodeCategory.PROCESSING
    title = "Condition"
    description = "If / else if / else on text and numbers: follows the first matching branch."
    Config = ConditionConfig
    outputs = {"matched": "string"}
    # For the editor (`*`: every case); template_sources says what is rendered.
    template_fields = ("cases.*.left", "cases.*.right")

    @classmethod
    def branches(cls, config: NodeConfig) -> list[str]:
        assert isinstance(config, ConditionConfig)  # noqa: S101  (registry guarantees it)
        return [case.id for case in config.cases] + [ELSE_BRANCH]

    @classmethod
    def required_branches(cls, config: NodeConfig) -> list[str]:
        # Every "if" needs somewhere to go; "else" may simply end the path.
        return cls.branches(config)[:-1]

    @classmethod
    def template_sources(cls, config: NodeConfig) -> dict[str, str]:
        assert isinstance(config, ConditionConfig)  # noqa: S101
        sources: dict[str, str] = {}
        for index, case in enumerate(config.cases):
            sources[f"cases.{index}.left"] = case.left
            sources[f"cases.{index}.right"] = case.right
        return sources

    async def run(self, context: NodeContext) -> NodeResult:
        for index, case in enumerate(self.config.cases):
            try:
                left = context.render(case.left)
                right = "" if case.operator in _UNARY else context.render(case.right)
                matched = compare(left, case.operator, right)
            except (TemplateError, ComparisonError) as exc:
                return NodeResult.failure(f"cases.{index} ({case.id}): {exc}")
            if matched:
                return NodeResult(outputs={"matched": case.id}, branch=case.id)
        return NodeResult(outputs={"matched": ELSE_BRANCH}, branch=ELSE_BRANCH)
