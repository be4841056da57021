from __future__ import annotations

from pydantic import Field

from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register


class ManualTriggerConfig(NodeConfig):
    sample_message: str = Field(
        default="",
        max_length=4000,
        title="Sample message",
        description="Offered as the message when the workflow is run by hand.",
    )


@register
class ManualTrigger(Node[ManualTriggerConfig]):
    type_id = "manual_trigger"
    category = NodeCategory.TRIGGER
    title = "Manual run"
    description = "Starts the workflow when someone presses Run, with a message they type."
    Config = ManualTriggerConfig
    outputs = {"text": "string", "payload": "object"}

    async def run(self, context: NodeContext) -> NodeResult:
        trigger = context.variables.get("trigger", {})
        text = trigger.get("text") or self.config.sample_message
        return NodeResult(outputs={"text": text, "payload": trigger.get("payload", {})})
