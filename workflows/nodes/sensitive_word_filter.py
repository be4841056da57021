from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from workflows.engine.graph import DEFAULT_OUTPUT_HANDLE
from workflows.engine.sensitive_words import (
    MAX_WORD_LENGTH,
    WORD_LIST_RESOURCE,
    WordMatcher,
    found_words,
    mask,
)
from workflows.engine.templates import TemplateError
from workflows.nodes.base import (
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.registry import register

BLOCKED_BRANCH = "blocked"

ListName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Word = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_WORD_LENGTH)
]


class SensitiveWordFilterConfig(NodeConfig):
    text: str = Field(
        default="{{ trigger.text }}",
        max_length=20_000,
        title="Text",
        description="Template of the text to check, e.g. '{{ trigger.text }}'.",
    )
    word_lists: list[ListName] = Field(
        default_factory=list,
        max_length=20,
        title="Word lists",
        description="Names of sensitive word lists, managed in the admin "
        "(Workflows > Sensitive word lists). Only enabled lists can be used.",
    )
    mode: Literal["mask", "block"] = Field(
        default="mask",
        title="When a word is found",
        description="mask: replace each found word's characters and go on by 'out'; "
        "block: leave the text as it is and go on by 'blocked'.",
    )
    mask_char: str = Field(
        default="*", min_length=1, max_length=1, title="Mask character (mask mode)"
    )
    extra_words: list[Word] = Field(
        default_factory=list,
        max_length=1000,
        title="Extra words",
        description="Words checked in addition to the lists'.",
    )

    @model_validator(mode="after")
    def _has_words(self) -> Self:
        if not self.word_lists and not self.extra_words:
            raise ValueError("name at least one word list or extra word")
        if len(set(self.word_lists)) != len(self.word_lists):
            raise ValueError("a word list is named twice")
        return self


@register
class SensitiveWordFilter(Node[SensitiveWordFilterConfig]):
    type_id = "sensitive_word_filter"
    category = NodeCategory.PROCESSING
    title = "Sensitive-word filter"
    description = (
        "Finds words of sensitive word lists (Chinese and English, any letter case) and masks "
        "them or takes the 'blocked' branch."
    )
    Config = SensitiveWordFilterConfig
    outputs = {"text": "string", "matches": "array", "blocked": "boolean"}
    template_fields = ("text",)

    def __init__(self, node_id: str, config: SensitiveWordFilterConfig) -> None:
        super().__init__(node_id, config)
        # Built once per compiled workflow; the lists' automatons come from the runner.
        self.extra = WordMatcher(config.extra_words)

    @classmethod
    def branches(cls, config: NodeConfig) -> list[str]:
        assert isinstance(config, SensitiveWordFilterConfig)  # noqa: S101  (registry guarantees it)
        if config.mode == "block":
            return [DEFAULT_OUTPUT_HANDLE, BLOCKED_BRANCH]
        return [DEFAULT_OUTPUT_HANDLE]

    @classmethod
    def required_branches(cls, config: NodeConfig) -> list[str]:
        # A block that leads nowhere would silently end the path: the designer must choose.
        return [BLOCKED_BRANCH] if BLOCKED_BRANCH in cls.branches(config) else []

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, SensitiveWordFilterConfig)  # noqa: S101
        return [(WORD_LIST_RESOURCE, name) for name in config.word_lists]

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            text = context.render(self.config.text)
        except TemplateError as exc:
            return NodeResult.failure(f"text {exc}")
        matchers = [self.extra]
        for name in self.config.word_lists:
            matcher = context.resources.get((WORD_LIST_RESOURCE, name))
            if not isinstance(matcher, WordMatcher):
                return NodeResult.failure(
                    f"sensitive word list {name!r} does not exist or is disabled"
                )
            matchers.append(matcher)
        matches = [match for matcher in matchers for match in matcher.find(text)]
        words = found_words(matches)
        if self.config.mode == "block":
            branch = BLOCKED_BRANCH if matches else DEFAULT_OUTPUT_HANDLE
            return NodeResult(
                outputs={"text": text, "matches": words, "blocked": bool(matches)}, branch=branch
            )
        return NodeResult(
            outputs={
                "text": mask(text, matches, self.config.mask_char),
                "matches": words,
                "blocked": False,
            }
        )
