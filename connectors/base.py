"""The contract every platform adapter implements (Feishu/Lark, Telegram, web chat, webhook).

An adapter is plain Python: it never touches the ORM, so that it can be tested from literal
payloads and run inside a worker's event loop. The connector services (``services.py``) do
the storing, deduplicating, run starting and delivery bookkeeping around it:

1. ``verify(settings, request)`` checks one HTTP request from the platform (signature, token,
   timestamp window), decrypts it if needed and answers either the JSON payload to process or
   an immediate answer (a URL-verification challenge). Refusals raise :class:`RequestRejected`
   naming the header or field at fault.
2. ``parse(settings, payload)`` turns a verified payload into :class:`InboundItem` values: a
   chat message for a workflow, a command the connector answers itself, or an event that is
   acknowledged and ignored (with the reason). Each item carries its deduplication key.
3. ``send``, ``stream_*`` and ``typing`` talk to the platform's API through ``assistant_site.http``.
   Failures raise :class:`DeliveryError`, saying whether a retry can help and when.

Adapters get a :class:`ConnectorSettings`: the connector's validated config, its decrypted
secrets and its API base URL (per connector, so tests point it at a local imitation of the
platform, and operators choose Feishu China or Lark international, or a self-hosted Telegram
Bot API server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from workflows.nodes.message_trigger import ChatMessage


class PlatformConfig(BaseModel):
    """A platform's non-secret settings (JSON on the connector), validated per platform."""

    model_config = ConfigDict(extra="forbid")


class PlatformSecrets(BaseModel):
    """A platform's secrets (encrypted on the connector, write-only in the API and admin).
    Validation errors never show the value they refused: they end up in logs and answers."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


@dataclass(frozen=True)
class ConnectorSettings:
    """What an adapter knows about the connector it serves."""

    connector_id: int
    config: Any  # the platform's PlatformConfig subclass
    secrets: Any  # the platform's PlatformSecrets subclass
    api_base_url: str  # no trailing slash


class _Headers(dict[str, str]):
    """Header names compared without case, as HTTP says; keys are kept lower-case."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((name.lower(), value) for name, value in headers.items())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class InboundRequest:
    """One HTTP request from a platform, exactly as received: signatures cover the raw bytes."""

    body: bytes
    headers: Mapping[str, str]
    remote_addr: str = ""
    received_at: float = 0.0  # epoch seconds, for timestamp windows

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _Headers(self.headers))

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Verified:
    """A verified request: the payload to parse, or an answer to give at once and nothing to
    store (``immediate``, e.g. Feishu's ``{"challenge": ...}``)."""

    payload: dict[str, Any] = field(default_factory=dict)
    immediate: dict[str, Any] | None = None


class RequestRejected(Exception):  # noqa: N818  (reads as the outcome: raise RequestRejected)
    """A request that is not from the platform, or not acceptable: answered with ``status``
    and a JSON body naming ``field`` (a header or body field). Never stored."""

    def __init__(self, status: int, field: str, message: str, *, signature: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        # A failed signature or token check (logged with the source address, counted apart).
        self.signature = signature


@dataclass(frozen=True)
class ReplyTarget:
    """Where the answer to an inbound message goes, in the platform's own terms."""

    chat_id: str
    message_id: str = ""  # the message answered (Feishu reply API, Telegram reply_parameters)
    thread_id: str = ""


@dataclass(frozen=True)
class InboundItem:
    """One thing a payload asks of the connector.

    ``dedupe_key`` is unique per connector across deliveries of the same thing (Feishu:
    the message id, as Feishu redelivers a message under new event ids; Telegram: the
    update id). ``kind``:

    - ``message``: ``message`` is offered to the connector's workflow;
    - ``command``: a command the connector answers itself (``command`` is its name without
      the slash: ``start``, ``help``, ``reset``);
    - ``ignored``: acknowledged and dropped, ``reason`` says why (an unhandled event type,
      a group message that does not address the bot...).
    """

    dedupe_key: str
    kind: Literal["message", "command", "ignored"]
    event_id: str = ""
    event_type: str = ""
    message: ChatMessage | None = None
    target: ReplyTarget | None = None
    command: str = ""
    reason: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to deliver. ``idempotency_key`` is stable across retries of the same reply;
    platforms that support it (Feishu's ``uuid``) make a retried send produce one message."""

    text: str
    target: ReplyTarget
    idempotency_key: str
    # What an earlier attempt delivered before it failed (``DeliveryError.sent``): send only
    # the parts after it. Platforms with idempotent sends (Feishu's uuid) may ignore it.
    sent_before: SentMessage | None = None


@dataclass(frozen=True)
class SentMessage:
    """What the platform answered: its ids of the message(s) sent (a long reply can be split
    into several), the first being the one streaming edits go to."""

    message_ids: list[str]
    # Platform data needed to edit the message later (Feishu CardKit card id, sequence...).
    handle: dict[str, Any] = field(default_factory=dict)


FailureScope = Literal["connector", "chat", "message"]


class DeliveryError(Exception):
    """A send or edit that did not happen. ``permanent``: repeating cannot help; otherwise
    retry, not before ``retry_after_s`` when the platform said so (429). ``scope`` says what
    a permanent failure concerns: the whole ``connector`` (bad credentials, a missing
    permission scope: shown on the connector for an administrator), one ``chat`` (the user
    blocked the bot, the bot left the group) or one ``message`` (refused content)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        scope: FailureScope = "connector",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.scope = scope
        # A reply split into several messages that failed part way: what was delivered, so
        # that the retry sends only the rest (``OutboundMessage.sent_before``).
        self.sent: SentMessage | None = None


class Adapter(Protocol):
    """One platform. Registered in ``connectors.registry`` under ``platform``."""

    platform: ClassVar[str]
    label: ClassVar[str]
    config_model: ClassVar[type[PlatformConfig]]
    secrets_model: ClassVar[type[PlatformSecrets]]
    default_api_base_url: ClassVar[str]
    # Streaming: the least time between two edits of one message, and the longest text one
    # message can hold (longer answers are split when delivered, and streaming stops there).
    edit_interval_s: ClassVar[float]
    max_message_chars: ClassVar[int]

    def verify(self, settings: ConnectorSettings, request: InboundRequest) -> Verified:
        """Check that the request comes from the platform; decrypt it; see the module doc."""
        ...

    def parse(self, settings: ConnectorSettings, payload: dict[str, Any]) -> list[InboundItem]:
        """What a verified payload asks for. Never raises on a well-formed but unexpected
        event: it becomes an ``ignored`` item, so the platform stops redelivering it."""
        ...

    async def send(self, settings: ConnectorSettings, message: OutboundMessage) -> SentMessage:
        """Deliver a whole reply (split into several messages if longer than one may be)."""
        ...

    async def stream_start(
        self, settings: ConnectorSettings, message: OutboundMessage
    ) -> SentMessage:
        """Send the first part of an answer still being generated, as a message that
        ``stream_update`` can edit (Feishu: an interactive card; Telegram: a text message)."""
        ...

    async def stream_update(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """Show ``text`` (the answer so far) in the streamed message; answers the handle for
        the next call. Editing to the same text is a success. The caller keeps to
        ``edit_interval_s`` and stops updating past ``max_message_chars``."""
        ...

    async def stream_finish(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """Make the streamed message show exactly the final ``text`` (sending what does not
        fit as further messages) and end streaming; answers every message id used."""
        ...

    async def typing(self, settings: ConnectorSettings, target: ReplyTarget) -> None:
        """Show that an answer is being prepared, where the platform has such a signal."""
        ...

    def callback_hint(self, settings: ConnectorSettings, callback_url: str) -> str:
        """One line telling the administrator where the callback URL goes."""
        ...
