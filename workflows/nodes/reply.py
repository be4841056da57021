"""A reply to the person who wrote the message, as text, Markdown or a card.

Connectors will deliver replies later; until then a reply exists only as this node's outputs in
the run's trace. The path may go on after a reply (to more processing, or to ``end``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

MAX_CARD_CHARS = 30_000  # as JSON; about what chat platforms accept for one card
MAX_CARD_DEPTH = 16


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a card with its path (``card.header.title``); keys stay literal."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


class _CardTemplateError(Exception):
    def __init__(self, path: str, error: TemplateError) -> None:
        super().__init__(f"{path} {error}")


def _render_card(value: Any, path: str, render: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        try:
            return render(value)
        except TemplateError as exc:
            raise _CardTemplateError(path, exc) from exc
    if isinstance(value, dict):
        return {key: _render_card(item, f"{path}.{key}", render) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_card(item, f"{path}.{index}", render) for index, item in enumerate(value)]
    return value  # numbers, booleans and null are kept as they are


class ReplyConfig(NodeConfig):
    format: Literal["text", "markdown", "card"] = Field(
        default="text", title="Format", description="text, markdown or card"
    )
    text: str = Field(
        default="",
        max_length=20_000,
        title="Text",
        description="Template; required for text and Markdown, the fallback text of a card.",
    )
    card: dict[str, Any] | None = Field(
        default=None,
        title="Card",
        description="JSON object in the platform's card format; every string in it is a template.",
    )

    @field_validator("card")
    @classmethod
    def _bounded(cls, card: dict[str, Any] | None) -> dict[str, Any] | None:
        if card is None:
            return None
        # Depth first: it keeps the recursive walks (and json.dumps) far from Python's limit.
        if _depth(card) > MAX_CARD_DEPTH:
            raise ValueError(f"the card is nested more than {MAX_CARD_DEPTH} levels deep")
        if len(json.dumps(card, ensure_ascii=False)) > MAX_CARD_CHARS:
            raise ValueError(f"the card is longer than {MAX_CARD_CHARS} characters as JSON")
        return card

    @model_validator(mode="after")
    def _content_for_format(self) -> Self:
        if self.format == "card" and not self.card:
            raise ValueError("a card reply needs a card")
        if self.format != "card" and not self.text.strip():
            raise ValueError(f"a {self.format} reply needs text")
        return self


@register
class Reply(Node[ReplyConfig]):
    type_id = "reply"
    category = NodeCategory.OUTPUT
    title = "Reply"
    description = "Replies with text, Markdown or a card; the path may go on afterwards."
    Config = ReplyConfig
    outputs = {"format": "string", "text": "string", "card": "object"}
    # For the editor; template_sources below says what is rendered (the card's strings too).
    template_fields = ("text",)

    @classmethod
    def template_sources(cls, config: NodeConfig) -> dict[str, str]:
        assert isinstance(config, ReplyConfig)  # noqa: S101  (registry guarantees it)
        sources = {"text": config.text}
        if config.format == "card" and config.card is not None:
            sources.update(_strings(config.card, "card"))
        return sources

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            text = context.render(self.config.text)
        except TemplateError as exc:
            return NodeResult.failure(f"text {exc}")
        card: dict[str, Any] | None = None
        if self.config.format == "card" and self.config.card is not None:
            try:
                card = _render_card(self.config.card, "card", context.render)
            except _CardTemplateError as exc:
                return NodeResult.failure(str(exc))
        return NodeResult(outputs={"format": self.config.format, "text": text, "card": card})
