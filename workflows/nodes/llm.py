"""Generates text with a chat model through the LLM gateway (workflows/llm/).

The node names model endpoints in order: the gateway retries each with backoff and falls back
to the next when one is slow, overloaded or down; every attempt is listed in the node's
``attempts`` output, so the trace says what happened. Endpoints are loaded by the runner for
each run, so editing one in the admin takes effect on the next run in every worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant_site.metrics import LLM_CACHE
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
from workflows.nodes.registry import register

# A model endpoint's settings by its name (workflows.llm.endpoints.EndpointConfig).
MODEL_ENDPOINT_RESOURCE = "model_endpoint"
# The shared response cache (an object with async get(key) and set(key, value, ttl_s)).
RESPONSE_CACHE_RESOURCE: ResourceKey = ("response_cache", "default")
NO_ENDPOINT = "no model endpoint configured"


class GenerationParams(BaseModel):
    """Sampling parameters, as a node sets them or an endpoint's defaults."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2, title="Temperature")
    top_p: float | None = Field(default=None, gt=0, le=1, title="Top p")
    max_tokens: int | None = Field(default=None, ge=1, le=131_072, title="Max tokens")
    stop: list[str] | None = Field(default=None, max_length=4, title="Stop sequences")
    seed: int | None = Field(default=None, title="Seed")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, stop: list[str] | None) -> list[str] | None:
        if stop is not None and any(not item for item in stop):
            raise ValueError("a stop sequence cannot be empty")
        return stop

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class LlmConfig(NodeConfig):
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=5,
        title="Model endpoints",
        description="Chat endpoints by name, tried in this order: the next one is used when "
        "one is down or overloaded. With none, the node fails with "
        f"'{NO_ENDPOINT}' (an error branch can answer without a model).",
    )
    system_prompt: str = Field(
        default="", max_length=20_000, title="System prompt", description="Template."
    )
    prompt: str = Field(
        default="{{ trigger.text }}",
        min_length=1,
        max_length=20_000,
        title="User prompt",
        description="Template, e.g. Answer from these passages: {{ nodes.kb.context }} "
        "Question: {{ trigger.text }}",
    )
    history_turns: int = Field(
        default=0,
        ge=0,
        le=50,
        title="Conversation turns to include",
        description="Earlier exchanges of the conversation sent before the prompt (0: none).",
    )
    params: GenerationParams = Field(
        default_factory=GenerationParams,
        title="Parameters",
        description="Override the endpoint's defaults.",
    )
    stream: bool = Field(
        default=True,
        title="Stream",
        description="Show the answer as it is generated (live trace, chat replies).",
    )
    cache_ttl_s: int = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        title="Cache answers for (seconds)",
        description="0: off. On, the same prompt, history, parameters and endpoints get the "
        "stored answer without calling the model (use 3600 for FAQ-like prompts); failures "
        "are never cached.",
    )

    @field_validator("endpoints")
    @classmethod
    def _distinct(cls, endpoints: list[str]) -> list[str]:
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("an endpoint is listed twice")
        if any(not name.strip() for name in endpoints):
            raise ValueError("an endpoint name is empty")
        return endpoints


def available_endpoints(context: NodeContext, names: list[str]) -> list[Any]:
    """The named endpoints the runner could load (existing and enabled), in order."""
    return [
        context.resources[MODEL_ENDPOINT_RESOURCE, name]
        for name in names
        if (MODEL_ENDPOINT_RESOURCE, name) in context.resources
    ]


def no_endpoint_message(names: list[str]) -> str:
    missing = ", ".join(names)
    return NO_ENDPOINT + (f" ({missing}: missing or disabled)" if missing else "")


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``response_format`` for a JSON-schema constrained answer. vLLM 0.12 and later
    honour it; the old ``guided_json`` field is ignored there without an error."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def history_messages(conversation: Any, turns: int) -> list[dict[str, str]]:
    """The last ``turns`` exchanges of ``conversation.history`` as chat messages."""
    if not turns or not isinstance(conversation, dict):
        return []
    history = conversation.get("history") or []
    messages = [
        {"role": item["role"], "content": str(item.get("text", ""))}
        for item in history
        if isinstance(item, dict) and item.get("role") in {"user", "assistant"}
    ]
    return messages[-2 * turns :]


@register
class Llm(Node[LlmConfig]):
    type_id = "llm"
    category = NodeCategory.PROCESSING
    title = "LLM"
    description = "Generates text with a chat model, with retries and fallback endpoints."
    Config = LlmConfig
    outputs = {
        "text": "string",
        "finish_reason": "string",
        "endpoint": "string",
        "model": "string",
        "tokens_in": "number",
        "tokens_out": "number",
        "attempts": "array",
        "cached": "boolean",
    }
    template_fields = ("system_prompt", "prompt")

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, LlmConfig)  # noqa: S101  (registry guarantees it)
        keys = [(MODEL_ENDPOINT_RESOURCE, name) for name in config.endpoints]
        return [*keys, RESPONSE_CACHE_RESOURCE] if config.cache_ttl_s else keys

    def cache_key(self, endpoints: list[Any], request: ChatRequest) -> str:
        """Everything that shapes the answer: this node's config (so a new version with a
        changed node misses), each endpoint's revision, and the rendered messages."""
        material = {
            "config": self.config.model_dump(mode="json"),
            "endpoints": [[endpoint.name, endpoint.revision] for endpoint in endpoints],
            "messages": request.messages,
            "params": dict(request.params),
        }
        encoded = json.dumps(material, ensure_ascii=False, sort_keys=True).encode()
        return "llm-answer:" + hashlib.sha256(encoded).hexdigest()

    async def run(self, context: NodeContext) -> NodeResult:
        available = available_endpoints(context, self.config.endpoints)
        if not available:
            return NodeResult.failure(no_endpoint_message(self.config.endpoints))
        messages: list[dict[str, str]] = []
        try:
            system = context.render(self.config.system_prompt).strip()
            prompt = context.render(self.config.prompt)
        except TemplateError as exc:
            return NodeResult.failure(f"prompt {exc}")
        if system:
            messages.append({"role": "system", "content": system})
        messages += history_messages(
            context.variables.get("conversation"), self.config.history_turns
        )
        messages.append({"role": "user", "content": prompt})
        request = ChatRequest(
            messages=messages, params=self.config.params.given(), stream=self.config.stream
        )
        cache = context.resources.get(RESPONSE_CACHE_RESOURCE) if self.config.cache_ttl_s else None
        key = self.cache_key(available, request) if cache is not None else ""
        if cache is not None:
            try:
                stored = await cache.get(key)
            except Exception:  # an unreachable cache means asking the model, not failing
                stored = None
            LLM_CACHE.labels("hit" if stored else "miss").inc()
            if stored:
                if context.emit_delta is not None and stored.get("text"):
                    context.emit_delta(stored["text"])
                # No tokens counted: the model was not called.
                return NodeResult(outputs={**stored, "cached": True, "attempts": []})
        try:
            # Looked up at call time: tests put a gateway with short backoffs in its place.
            result = await llm_gateway.gateway.chat(available, request, on_delta=context.emit_delta)
        except LlmError as exc:
            return NodeResult.failure(str(exc))
        outputs: dict[str, Any] = {
            "text": result.text,
            "finish_reason": result.finish_reason or "",
            "endpoint": result.endpoint,
            "model": result.model,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
        }
        if cache is not None:
            with contextlib.suppress(Exception):  # the answer stands without the cache
                await cache.set(key, outputs, self.config.cache_ttl_s)
        return NodeResult(
            outputs={
                **outputs,
                "cached": False,
                "attempts": [
                    {
                        "endpoint": attempt.endpoint,
                        "outcome": attempt.outcome,
                        "status_code": attempt.status_code,
                        "duration_ms": round(attempt.duration_ms, 1),
                        "retry_in_s": attempt.retry_in_s,
                    }
                    for attempt in result.attempts
                ],
            },
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
        )
