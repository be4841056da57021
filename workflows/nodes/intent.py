"""Rule-based intent recognition: the first matching regular expression names the intent.

Python's ``re`` has no timeout, and a node's time limit cannot interrupt a match that is
already running (matching holds the event loop and the GIL). A pattern with nested
quantifiers can backtrack for a very long time on a crafted message, so both sides are
capped: patterns at MAX_PATTERN_CHARS, the text at MAX_TEXT_CHARS (the rest is cut off and the
outputs say so). Authors must still avoid patterns like ``(a+)+$``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from workflows.engine.graph import ERROR_HANDLE
from workflows.engine.templates import TemplateError
from workflows.llm import gateway as llm_gateway
from workflows.llm.errors import LlmError
from workflows.llm.gateway import ChatRequest
from workflows.nodes.base import (
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.llm import (
    MODEL_ENDPOINT_RESOURCE,
    available_endpoints,
    json_schema_format,
    no_endpoint_message,
)
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


class IntentLlmFallback(NodeConfig):
    endpoints: list[str] = Field(
        min_length=1,
        max_length=5,
        title="Model endpoints",
        description="Chat endpoints by name, tried in order.",
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict,
        title="What each intent means",
        description="Intent id -> a sentence for the model, e.g. calendar_create: the user "
        "wants to put an event in their calendar.",
    )
    instructions: str = Field(default="", max_length=4000, title="Extra instructions for the model")

    @field_validator("descriptions")
    @classmethod
    def _short(cls, descriptions: dict[str, str]) -> dict[str, str]:
        for intent, text in descriptions.items():
            if len(text) > 500:
                raise ValueError(f"the description of {intent!r} is longer than 500 characters")
        return descriptions


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
    llm_fallback: IntentLlmFallback | None = Field(
        default=None,
        title="Ask a model when no rule matches",
        description="The model picks one of the rules' intents (or fallback), constrained by a "
        "JSON schema; leave empty for rules only.",
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

    @model_validator(mode="after")
    def _described_intents_exist(self) -> Self:
        if self.llm_fallback is not None:
            declared = {rule.intent for rule in self.rules}
            unknown = sorted(set(self.llm_fallback.descriptions) - declared)
            if unknown:
                raise ValueError(
                    "llm_fallback.descriptions names intents no rule declares: "
                    + ", ".join(unknown)
                )
        return self

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
        "classified_by": "string",  # rule, llm or none
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
                        "classified_by": "rule",
                    },
                    branch=rule.intent,
                )
        if self.config.llm_fallback is not None:
            return await self.ask_model(context, self.config.llm_fallback, text, truncated)
        return self.outcome(FALLBACK_BRANCH, truncated, "none")

    def outcome(self, intent: str, truncated: bool, classified_by: str) -> NodeResult:
        return NodeResult(
            outputs={
                "intent": intent,
                "parameters": {},
                "matched_text": "",
                "truncated": truncated,
                "classified_by": classified_by,
            },
            branch=intent,
        )

    async def ask_model(
        self, context: NodeContext, fallback: IntentLlmFallback, text: str, truncated: bool
    ) -> NodeResult:
        endpoints = available_endpoints(context, fallback.endpoints)
        if not endpoints:
            return NodeResult.failure(no_endpoint_message(fallback.endpoints))
        intents = list(dict.fromkeys(rule.intent for rule in self.config.rules))
        choices = "\n".join(
            f"- {intent}: {fallback.descriptions.get(intent, intent.replace('_', ' '))}"
            for intent in intents
        )
        system = (
            "Classify the user's message as one of these intents, or fallback if none fits:\n"
            f"{choices}\n- {FALLBACK_BRANCH}: none of the above.\n"
            'Answer with JSON: {"intent": "<one of the ids>"}.'
        )
        if fallback.instructions.strip():
            system += "\n\n" + fallback.instructions.strip()
        schema = {
            "type": "object",
            "properties": {"intent": {"type": "string", "enum": [*intents, FALLBACK_BRANCH]}},
            "required": ["intent"],
            "additionalProperties": False,
        }
        request = ChatRequest(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
            params={"temperature": 0},
            response_format=json_schema_format("intent", schema),
        )
        try:
            result = await llm_gateway.gateway.chat(endpoints, request)
        except LlmError as exc:
            return NodeResult.failure(str(exc))
        try:
            answer = json.loads(result.text)
            intent = answer["intent"] if isinstance(answer, dict) else None
        except (json.JSONDecodeError, KeyError):
            intent = None
        # An answer outside the choices (an endpoint that ignores schemas) counts as no match.
        chosen = intent if isinstance(intent, str) and intent in intents else FALLBACK_BRANCH
        outcome = self.outcome(chosen, truncated, "llm")
        outcome.tokens_in, outcome.tokens_out = result.tokens_in, result.tokens_out
        return outcome

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, IntentConfig)  # noqa: S101  (registry guarantees it)
        if config.llm_fallback is None:
            return []
        return [(MODEL_ENDPOINT_RESOURCE, name) for name in config.llm_fallback.endpoints]
