"""Extracts structured parameters from text with a chat model, checked against a JSON Schema.

The model is asked for JSON constrained by the schema (``response_format`` json_schema, which
vLLM enforces while generating). The answer is still validated here, because a fallback
endpoint may not enforce schemas; an invalid answer gets one repair attempt (the model sees
its answer and what is wrong with it) before the node fails.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from pydantic import Field, field_validator

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

MAX_SCHEMA_CHARS = 20_000
MAX_ERRORS_SHOWN = 5
_INSTRUCTIONS = (
    "Extract the parameters described by the JSON Schema from the user's text. Answer with "
    "one JSON object that matches the schema and nothing else. Leave out a property the text "
    "does not give, unless the schema requires it."
)


def schema_errors(schema: dict[str, Any], value: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.absolute_path))
    return [
        f"{'/'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}"
        for error in errors[:MAX_ERRORS_SHOWN]
    ]


class ParameterExtractorConfig(NodeConfig):
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=5,
        title="Model endpoints",
        description="Chat endpoints by name, tried in order.",
    )
    text: str = Field(
        default="{{ trigger.text }}",
        min_length=1,
        max_length=20_000,
        title="Text",
        description="Template: the text to extract from.",
    )
    parameters_schema: dict[str, Any] = Field(
        title="Parameters (JSON Schema)",
        description='An object schema, e.g. {"type": "object", "properties": {"city": '
        '{"type": "string"}, "date": {"type": "string", "format": "date"}}, '
        '"required": ["city"]}',
    )
    instructions: str = Field(
        default="",
        max_length=4000,
        title="Extra instructions",
        description="Template, added to the system prompt (e.g. today's date for relative dates).",
    )

    @field_validator("parameters_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(schema, ensure_ascii=False)) > MAX_SCHEMA_CHARS:
            raise ValueError(f"the schema is longer than {MAX_SCHEMA_CHARS} characters")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
            raise ValueError('the schema must be {"type": "object", "properties": {...}}')
        return schema


@register
class ParameterExtractor(Node[ParameterExtractorConfig]):
    type_id = "parameter_extractor"
    category = NodeCategory.PROCESSING
    title = "Parameter extractor"
    description = "Extracts parameters from text with a chat model, checked against a schema."
    Config = ParameterExtractorConfig
    outputs = {"parameters": "object", "repaired": "boolean", "endpoint": "string"}
    template_fields = ("text", "instructions")

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, ParameterExtractorConfig)  # noqa: S101  (registry guarantees)
        return [(MODEL_ENDPOINT_RESOURCE, name) for name in config.endpoints]

    async def run(self, context: NodeContext) -> NodeResult:
        endpoints = available_endpoints(context, self.config.endpoints)
        if not endpoints:
            return NodeResult.failure(no_endpoint_message(self.config.endpoints))
        try:
            text = context.render(self.config.text)
            extra = context.render(self.config.instructions).strip()
        except TemplateError as exc:
            return NodeResult.failure(str(exc))
        schema = self.config.parameters_schema
        system = _INSTRUCTIONS + (f"\n\n{extra}" if extra else "")
        messages: list[dict[str, str]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
        ]
        tokens_in = tokens_out = 0
        endpoint = ""
        problems: list[str] = []
        for attempt in range(2):  # the answer, then at most one repair
            request = ChatRequest(
                messages=messages, response_format=json_schema_format("parameters", schema)
            )
            try:
                result = await llm_gateway.gateway.chat(endpoints, request)
            except LlmError as exc:
                return NodeResult.failure(str(exc))
            tokens_in += result.tokens_in
            tokens_out += result.tokens_out
            endpoint = result.endpoint
            try:
                value: Any = json.loads(result.text)
            except json.JSONDecodeError as exc:
                problems = [f"not JSON: {exc.msg} at character {exc.pos}"]
            else:
                problems = schema_errors(schema, value)
                if not problems:
                    return NodeResult(
                        outputs={
                            "parameters": value,
                            "repaired": attempt > 0,
                            "endpoint": endpoint,
                        },
                        tokens_in=tokens_in,
                        tokens_out=tokens_out,
                    )
            messages = [
                *messages,
                {"role": "assistant", "content": result.text},
                {
                    "role": "user",
                    "content": "That answer does not match the schema: "
                    + "; ".join(problems)
                    + ". Answer again with the corrected JSON object only.",
                },
            ]
        failure = NodeResult.failure(
            "the model's answer does not match the schema, even after one repair: "
            + "; ".join(problems)
        )
        failure.tokens_in, failure.tokens_out = tokens_in, tokens_out
        return failure
