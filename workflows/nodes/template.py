from __future__ import annotations

from pydantic import Field

from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register


class TemplateConfig(NodeConfig):
    template: str = Field(
        min_length=1,
        max_length=20_000,
        title="Template",
        description="Jinja2 text, e.g. 'Hello {{ trigger.text }}'.",
    )


@register
class Template(Node[TemplateConfig]):
    type_id = "template"
    category = NodeCategory.PROCESSING
    title = "Template"
    description = "Builds text from the message, earlier nodes' outputs and variables."
    Config = TemplateConfig
    outputs = {"text": "string"}
    template_fields = ("template",)

    async def run(self, context: NodeContext) -> NodeResult:
        try:
            return NodeResult(outputs={"text": context.render(self.config.template)})
        except TemplateError as exc:
            return NodeResult.failure(f"template {exc}")
