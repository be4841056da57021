"""Rule-based intent recognition: the first matching regular expression names the intent.

Python's ``re`` has no timeout, and a node's time limit cannot interrupt a match that is
already running (matching holds the event loop and the GIL). A pattern with nested
quantifiers can backtrack for a very long time on a crafted message, so both sides are
capped: patterns at MAX_PATTERN_CHARS, the text at MAX_TEXT_CHARS (the rest is cut off and the
outputs say so). Authors must still avoid patterns like ``(a+)+$``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from workflows.engine.graph import ERROR_HANDLE
from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

FALLBACK_BRANCH = "fallback"
MAX_PATTERN_CHARS = 500
MAX_TEXT_CHARS = 5000
# "fallback" is this node's own branch; "error" is the engine's branch for failures.
_RESERVED_BRANCHES = {FALLBACK_BRANCH, ERROR_HANDLE}
Flag = Literal["ignore_case"]
_FLAGS: dict[Flag, re.RegexFlag] = {"ignore_case": re.IGNORECASE}


class IntentRule(NodeConfig):
    intent: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        title="Intent",
        description="snake_case id, e.g. calendar_create; it names the branch followed on a match.",
    )
    pattern: str = Field(
        min_length=1,
        max_length=MAX_PATTERN_CHARS,
        title="Regular expression",
        description="Python syntax, searched anywhere in the text; named groups "
        "(?P<title>...) become parameters.",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str, info: ValidationInfo) -> str:
        name = info.data.get("intent", "?")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"rule {name!r}: bad regular expression: {exc}") from exc
        for group in compiled.groupindex:
            # Templates read nodes.<id>.parameters.<group>; on a dict, Jinja resolves names like
            # "items" or "keys" to the dict's methods before its keys.
            if hasattr(dict, group):
                raise ValueError(
                    f"rule {name!r}: group name {group!r} cannot be read as "
                    f"parameters.{group}; rename it"
                )
        return pattern


class IntentConfig(NodeConfig):
    text: str = Field(
        default="{{ trigger.text }}",
        max_length=2000,
        title="Text",
        description="Template for the text to classify; longer than "
        f"{MAX_TEXT_CHARS} characters, it is cut off.",
    )
    rules: list[IntentRule] = Field(
        min_length=1,
        max_length=50,
        title="Rules",
        description="Checked in order; the first match's intent branch is followed, else "
        f"'{FALLBACK_BRANCH}'. Several rules may name the same intent.",
    )
    flags: list[Flag] = Field(
        default_factory=list,
        title="Flags",
        description="ignore_case: letters match regardless of case.",
    )

    @field_validator("rules")
    @classmethod
    def _no_reserved_intents(cls, rules: list[IntentRule]) -> list[IntentRule]:
        for index, rule in enumerate(rules):
            if rule.intent in _RESERVED_BRANCHES:
                raise ValueError(
                    f"rule {index} ({rule.intent!r}): intent ids may not be "
                    f"{' or '.join(map(repr, sorted(_RESERVED_BRANCHES)))}"
                )
        return rules

    @field_validator("flags")
    @classmethod
    def _distinct_flags(cls, flags: list[Flag]) -> list[Flag]:
        if len(set(flags)) != len(flags):
            raise ValueError("each flag may be given once")
        return flags


@register
class Intent(Node[IntentConfig]):
    type_id = "intent"
    category = NodeCategory.PROCESSING
    title = "Intent"
    description = (
        "Recognises what a message asks for with regular-expression rules, extracts its "
        "parameters and follows that intent's branch, else 'fallback'."
    )
    Config = IntentConfig
    outputs = {
        "intent": "string",
        "parameters": "object",
        "matched_text": "string",
        "truncated": "boolean",
    }
    template_fields = ("text",)

    def __init__(self, node_id: str, config: IntentConfig) -> None:
        super().__init__(node_id, config)
        flags = re.NOFLAG
        for flag in config.flags:
            flags |= _FLAGS[flag]
        self.patterns = [re.compile(rule.pattern, flags) for rule in config.rules]

    @classmethod
    def branches(cls, config: NodeConfig) -> list[str]:
        return [*cls.required_branches(config), FALLBACK_BRANCH]

    @classmethod
    def required_branches(cls, config: NodeConfig) -> list[str]:
        # Every intent needs somewhere to go; "fallback" may simply end the path.
        assert isinstance(config, IntentConfig)  # noqa: S101  (registry guarantees it)
        return list(dict.fromkeys(rule.intent for rule in config.rules))

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            text = context.render(self.config.text)
        except TemplateError as exc:
            return NodeResult.failure(f"text {exc}")
        truncated = len(text) > MAX_TEXT_CHARS
        text = text[:MAX_TEXT_CHARS]
        for rule, pattern in zip(self.config.rules, self.patterns, strict=True):
            match = pattern.search(text)
            if match is not None:
                parameters: dict[str, Any] = {
                    name: value for name, value in match.groupdict().items() if value is not None
                }
                return NodeResult(
                    outputs={
                        "intent": rule.intent,
                        "parameters": parameters,
                        "matched_text": match.group(0),
                        "truncated": truncated,
                    },
                    branch=rule.intent,
                )
        return NodeResult(
            outputs={
                "intent": FALLBACK_BRANCH,
                "parameters": {},
                "matched_text": "",
                "truncated": truncated,
            },
            branch=FALLBACK_BRANCH,
        )
