from __future__ import annotations

from pydantic import Field, field_validator

from workflows.engine.templates import TemplateError
from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register


class Assignment(NodeConfig):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        title="Variable",
        description="Identifier; later nodes read it as {{ vars.<name> }}.",
    )
    value: str = Field(
        default="",
        max_length=20_000,
        title="Value",
        description="Template, e.g. {{ nodes.intent.parameters.title }}.",
    )

    @field_validator("name")
    @classmethod
    def _readable(cls, name: str) -> str:
        # On a dict, Jinja resolves vars.items, vars.keys... to the dict's methods, not its keys.
        if hasattr(dict, name):
            raise ValueError(f"{name!r} cannot be read as vars.{name}; choose another name")
        return name


class SetVariableConfig(NodeConfig):
    assignments: list[Assignment] = Field(
        min_length=1,
        max_length=50,
        title="Assignments",
        description="Each value is rendered, then all are written at once.",
    )

    @field_validator("assignments")
    @classmethod
    def _distinct_names(cls, assignments: list[Assignment]) -> list[Assignment]:
        names = [assignment.name for assignment in assignments]
        if len(set(names)) != len(names):
            raise ValueError("each variable may be assigned once per node")
        return assignments


@register
class SetVariable(Node[SetVariableConfig]):
    type_id = "set_variable"
    category = NodeCategory.PROCESSING
    title = "Set variable"
    description = "Renders values and stores them as workflow variables for later nodes."
    Config = SetVariableConfig
    outputs = {"values": "object"}
    # For the editor (`*`: every item of the list); template_sources says what is rendered.
    template_fields = ("assignments.*.value",)

    @classmethod
    def template_sources(cls, config: NodeConfig) -> dict[str, str]:
        assert isinstance(config, SetVariableConfig)  # noqa: S101  (registry guarantees it)
        return {
            f"assignments.{index}.value": assignment.value
            for index, assignment in enumerate(config.assignments)
        }

    @classmethod
    def declared_variables(cls, config: NodeConfig) -> list[str]:
        assert isinstance(config, SetVariableConfig)  # noqa: S101
        return [assignment.name for assignment in config.assignments]

    async def run(self, context: NodeContext) -> NodeResult:
        # Every value sees the variables as they were before this node, and nothing is written
        # unless all render: a failed (or retried) node leaves the run's variables untouched.
        values: dict[str, str] = {}
        for index, assignment in enumerate(self.config.assignments):
            try:
                values[assignment.name] = context.render(assignment.value)
            except TemplateError as exc:
                return NodeResult.failure(f"assignments.{index} ({assignment.name}): {exc}")
        # The run's variables dict is shared by every node of the run, so later nodes see this.
        context.variables.setdefault("vars", {}).update(values)
        return NodeResult(outputs={"values": dict(values)})
