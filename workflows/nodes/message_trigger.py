"""Starts a workflow when a chat message arrives from a connector (Feishu, Telegram, web chat).

A connector turns a platform event into a :class:`ChatMessage`. Before a run is created, the
message is offered to each message trigger of the published version: the first whose filters
accept it starts the run (:meth:`MessageTrigger.accepts`); a message no trigger accepts starts
nothing. Filters: chat type, "only when @-mentioned in groups", and a command prefix.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

ChatType = Literal["private", "group"]


def _every_chat_type() -> list[ChatType]:
    return ["private", "group"]


class ChatMessage(BaseModel):
    """One message as every connector hands it to a workflow."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=20_000)
    chat_type: ChatType = "private"
    # The bot was @-mentioned (in a group); connectors strip the mention from ``text``.
    mentioned: bool = False
    channel: str = Field(
        default="api", min_length=1, max_length=100, description="connector:<id>, api, ..."
    )
    chat_id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    user_name: str = Field(default="", max_length=200)
    message_id: str = Field(default="", max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict, description="the platform's own data")


class MessageTriggerConfig(NodeConfig):
    chat_types: list[ChatType] = Field(
        default_factory=_every_chat_type,
        min_length=1,
        title="Chat types",
        description="Which chats start the workflow: private (one to one), group, or both.",
    )
    groups_require_mention: bool = Field(
        default=True,
        title="Only when @-mentioned in groups",
        description="In a group, answer only messages that @-mention the bot.",
    )
    command_prefix: str = Field(
        default="",
        max_length=32,
        title="Command prefix",
        description="If set (e.g. /ask), only messages starting with it start the workflow; "
        "the prefix is removed from the text.",
    )

    @field_validator("chat_types")
    @classmethod
    def _distinct(cls, chat_types: list[ChatType]) -> list[ChatType]:
        if len(set(chat_types)) != len(chat_types):
            raise ValueError("a chat type is listed twice")
        return chat_types

    @field_validator("command_prefix")
    @classmethod
    def _one_word(cls, prefix: str) -> str:
        if prefix != prefix.strip() or any(char.isspace() for char in prefix):
            raise ValueError("the command prefix cannot contain spaces")
        return prefix


def _strip_prefix(text: str, prefix: str) -> str | None:
    """The text after the command, or None if the message is not that command. ``/ask`` takes
    "/ask x" and "/ask@bot x" (Telegram's form in groups) but not "/asking"."""
    stripped = text.lstrip()
    if not prefix:
        return stripped
    if not stripped.startswith(prefix):
        return None
    rest = stripped[len(prefix) :]
    if rest.startswith("@"):
        rest = rest.partition(" ")[2] if " " in rest else ""
    elif rest and not rest[0].isspace():
        return None
    return rest.strip()


@register
class MessageTrigger(Node[MessageTriggerConfig]):
    type_id = "message_trigger"
    category = NodeCategory.TRIGGER
    title = "Message"
    description = (
        "Starts the workflow when someone writes to the assistant in a connected chat "
        "(Feishu, Telegram, web chat), filtered by chat type, @-mention and command prefix."
    )
    Config = MessageTriggerConfig
    outputs = {
        "text": "string",
        "raw_text": "string",
        "chat_type": "string",
        "chat_id": "string",
        "user_id": "string",
        "user_name": "string",
        "channel": "string",
        "message_id": "string",
        "payload": "object",
    }

    @classmethod
    def accepts(cls, config: MessageTriggerConfig, message: ChatMessage) -> str | None:
        """None if this trigger takes the message, else why not (for logs and the API)."""
        if message.chat_type not in config.chat_types:
            return f"{message.chat_type} chats do not start this workflow"
        if message.chat_type == "group" and config.groups_require_mention and not message.mentioned:
            return "in groups the assistant answers only when @-mentioned"
        if _strip_prefix(message.text, config.command_prefix) is None:
            return f"the message does not start with {config.command_prefix}"
        return None

    async def run(self, context: NodeContext) -> NodeResult:
        trigger: dict[str, Any] = context.variables.get("trigger", {})
        raw = str(trigger.get("text", ""))
        text = _strip_prefix(raw, self.config.command_prefix)
        outputs = {name: trigger.get(name, "") for name in self.outputs}
        outputs.update(
            raw_text=raw,
            text=raw.strip() if text is None else text,
            chat_type=trigger.get("chat_type", "private"),
            payload=trigger.get("payload", {}),
        )
        return NodeResult(outputs=outputs)
