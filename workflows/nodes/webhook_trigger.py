"""Starts a workflow when another system POSTs a signed JSON document to its webhook URL.

The URL is ``/api/workflows/<workflow id>/hooks/<node id>/``. The caller signs each request
with a shared key kept as a credential: ``X-Timestamp`` carries the Unix time in seconds and
``X-Signature`` is ``sha256=`` + hex(HMAC-SHA256(key, "<timestamp>." + raw body)), the scheme
Stripe and Slack use. A stale timestamp is refused, so a captured request cannot be replayed
later.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import Field

from workflows.nodes.base import (
    CREDENTIAL_RESOURCE,
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
    ResourceKey,
)
from workflows.nodes.registry import register

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_PREFIX = "sha256="


class WebhookTriggerConfig(NodeConfig):
    credential: str = Field(
        min_length=1,
        max_length=100,
        title="Signing key",
        description="Name of the credential holding the key callers sign requests with.",
    )
    max_age_s: int = Field(
        default=300,
        ge=30,
        le=3600,
        title="Accepted clock difference (seconds)",
        description="Requests whose timestamp is further from now than this are refused.",
    )


class SignatureError(Exception):
    """A request the webhook refuses; ``field`` names the header at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def signature_for(key: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def signature_check(
    *,
    key: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    max_age_s: int,
) -> None:
    """Raise :class:`SignatureError` unless the request is signed with ``key`` and fresh."""
    if not timestamp:
        raise SignatureError(TIMESTAMP_HEADER, "the X-Timestamp header is missing")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError(TIMESTAMP_HEADER, "X-Timestamp must be Unix time in seconds")
    if abs(now - int(timestamp)) > max_age_s:
        raise SignatureError(
            TIMESTAMP_HEADER, f"X-Timestamp is more than {max_age_s} s away from the server's clock"
        )
    if not signature:
        raise SignatureError(SIGNATURE_HEADER, "the X-Signature header is missing")
    if not hmac.compare_digest(signature.strip(), signature_for(key, timestamp, body)):
        raise SignatureError(SIGNATURE_HEADER, "the signature does not match the request")


@register
class WebhookTrigger(Node[WebhookTriggerConfig]):
    type_id = "webhook_trigger"
    category = NodeCategory.TRIGGER
    title = "Webhook"
    description = "Starts the workflow when another system POSTs signed JSON to its URL."
    Config = WebhookTriggerConfig
    outputs = {"text": "string", "payload": "object", "received_at": "string"}

    @classmethod
    def required_resources(cls, config: NodeConfig) -> list[ResourceKey]:
        assert isinstance(config, WebhookTriggerConfig)  # noqa: S101  (registry guarantees it)
        # Declared so that publishing checks the publisher may use the key, and so that the
        # key is masked in traces should a caller echo it in the body.
        return [(CREDENTIAL_RESOURCE, config.credential)]

    async def run(self, context: NodeContext) -> NodeResult:
        trigger: dict[str, Any] = context.variables.get("trigger", {})
        payload = trigger.get("payload", {})
        return NodeResult(
            outputs={
                "text": str(trigger.get("text", "")),
                "payload": payload,
                "received_at": str(trigger.get("received_at", "")),
            }
        )
