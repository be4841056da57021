from __future__ import annotations

from pydantic import Field

from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register


class EndConfig(NodeConfig):
    output: str = Field(
        default="",
        max_length=20_000,
        title="Run output",
        description="Template for the run's output, e.g. '{{ nodes.answer.text }}'.",
    )


@register
class End(Node[EndConfig]):
    type_id = "end"
    category = NodeCategory.OUTPUT
    title = "End"
    description = "Ends this path of the run and sets the run's output."
    Config = EndConfig
    outputs = {"output": "string"}
    template_fields = ("output",)
    terminal = True

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            return NodeResult(outputs={"output": context.render(self.config.output)})
        except TemplateError as exc:
            return NodeResult.failure(f"output {exc}")
