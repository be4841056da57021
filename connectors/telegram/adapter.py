"""The Telegram adapter: webhook requests in, Bot API messages out (see ``connectors/base.py``).

Inbound: Telegram POSTs one ``Update`` per request to the webhook URL set with setWebhook,
carrying the connector's secret in ``X-Telegram-Bot-Api-Secret-Token``; polling mode gets
the same updates from getUpdates (``polling.py``) and skips :meth:`TelegramAdapter.verify`.

Outbound: replies are plain text (no ``parse_mode``). LLM output is Markdown-ish but not
valid MarkdownV2: every unescaped ``.``, ``!``, ``-`` or ``(`` makes Telegram refuse the
whole message with "can't parse entities", and escaping it all turns the text into a mess
of backslashes when the model did not mean formatting. Plain text always arrives, and
arrives exactly as generated. A reply longer than one message (4096 UTF-16 units) is sent
as several, cut at paragraph, line or word boundaries, with no character lost.

Streaming edits one message (sendMessage, then editMessageText at most every
``edit_interval_s``) and, at the end, edits it to the first part of the final split and
sends the rest as new messages. If the user deleted the streamed message (or it became too
old to edit), the final answer goes out as new messages.

``SentMessage.handle`` (JSON, for the caller to keep between calls): ``chat_id``,
``message_id`` (the first message, which edits go to), ``thread_id``, ``shown`` (a digest
of the text it shows, to skip identical edits without storing the answer twice), ``gone``
(it can no longer be edited) and ``migrated_to_chat_id``.

Chat migration: when a group becomes a supergroup, Telegram answers 400 with
``migrate_to_chat_id``; sends and typing go once more to the new chat. The caller learns
the new id from ``SentMessage.handle["migrated_to_chat_id"]`` (a string, like chat ids in
:class:`ReplyTarget`), or from ``TelegramApiError.migrate_to_chat_id`` if it failed anyway,
and should store it for the conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from connectors.base import (
    ConnectorSettings,
    DeliveryError,
    InboundItem,
    InboundRequest,
    OutboundMessage,
    PlatformConfig,
    PlatformSecrets,
    ReplyTarget,
    RequestRejected,
    SentMessage,
    Verified,
)

if TYPE_CHECKING:
    from connectors.base import Adapter
from connectors.telegram import api
from connectors.telegram.payloads import ParseContext, parse_update
from connectors.telegram.text import MAX_MESSAGE_UNITS, split_text, utf16_prefix

_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,200}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_]{3,64}$")

# What a streamed message shows before the first words arrive: Telegram refuses an empty
# (or all-whitespace) message.
PLACEHOLDER = "…"


class TelegramConfig(PlatformConfig):
    """Non-secret settings of a Telegram connector."""

    bot_username: str = Field(
        description="The bot's username without @ (getMe tells it): recognises @mentions "
        "and /command@bot in groups."
    )
    bot_id: int | None = Field(
        default=None,
        gt=0,
        description="The bot's user id: recognises replies to the bot and mentions by "
        "name. Empty: the digits before ':' in its token, which are that id.",
    )
    mode: Literal["webhook", "polling"] = Field(
        default="webhook",
        description="webhook: Telegram pushes updates to the callback URL (needs a public "
        "HTTPS address). polling: a worker asks getUpdates (no inbound connection needed).",
    )

    @field_validator("bot_username", mode="before")
    @classmethod
    def _without_at(cls, value: Any) -> Any:
        return value.strip().removeprefix("@") if isinstance(value, str) else value

    @field_validator("bot_username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValueError("a Telegram username is letters, digits and underscores")
        return value


class TelegramSecrets(PlatformSecrets):
    """Secrets of a Telegram connector, kept out of reprs and validation errors (both end
    up in logs and API answers)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bot_token: str = Field(repr=False, description="The token from @BotFather: <bot id>:<key>.")
    webhook_secret: str = Field(
        default="",
        repr=False,
        description="1-256 characters A-Z a-z 0-9 _ -, sent by Telegram with every webhook "
        "request. Required in webhook mode.",
    )

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: str) -> str:
        value = value.strip()
        if not _TOKEN.match(value):
            # The value itself stays out of the message: it is a secret.
            raise ValueError(
                "a bot token looks like 123456789:AA... (the bot id, a colon, then letters, "
                "digits, _ and -); copy it from @BotFather"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if value and not _SECRET.match(value):
            raise ValueError(
                "the webhook secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -"
            )
        return value


class TelegramAdapter:
    """Telegram Bot API, webhook or long polling; see the module docstring."""

    platform: ClassVar[str] = "telegram"
    label: ClassVar[str] = "Telegram"
    config_model: ClassVar[type[PlatformConfig]] = TelegramConfig
    secrets_model: ClassVar[type[PlatformSecrets]] = TelegramSecrets
    default_api_base_url: ClassVar[str] = "https://api.telegram.org"
    # Telegram allows about one message per second per chat (edits count) and 20 a minute in
    # a group; faster edits are answered with 429.
    edit_interval_s: ClassVar[float] = 1.0
    max_message_chars: ClassVar[int] = MAX_MESSAGE_UNITS  # UTF-16 units, as Telegram counts

    # -- inbound ---------------------------------------------------------------------------

    def verify(self, settings: ConnectorSettings, request: InboundRequest) -> Verified:
        """Check the secret header (constant time), then that the body is an Update."""
        secret = str(settings.secrets.webhook_secret)
        if not secret:
            # Without a secret anyone who learns the URL could post updates that run
            # workflows in the bot's name: refuse until one is set.
            raise RequestRejected(
                503,
                "webhook_secret",
                "This Telegram connector has no webhook secret, so its webhook cannot tell "
                "Telegram from anyone else: set a webhook secret, then set the webhook again.",
            )
        given = request.header(api.SECRET_HEADER)
        if given is None:
            raise RequestRejected(
                401, api.SECRET_HEADER, f"missing {api.SECRET_HEADER} header", signature=True
            )
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise RequestRejected(
                401, api.SECRET_HEADER, f"wrong {api.SECRET_HEADER} header", signature=True
            )
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise RequestRejected(400, "body", "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise RequestRejected(400, "body", "the body is not a JSON object (an Update)")
        update_id = payload.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise RequestRejected(400, "update_id", "update_id is missing or not an integer")
        return Verified(payload=payload)

    def parse(self, settings: ConnectorSettings, payload: dict[str, Any]) -> list[InboundItem]:
        """One item per update; see ``payloads.py`` for what each update becomes."""
        update_id = payload.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            # Polling hands updates over without verify(); nothing to dedupe on.
            return []
        config: TelegramConfig = settings.config
        context = ParseContext(
            channel=f"connector:{settings.connector_id}",
            bot_username=config.bot_username,
            bot_id=config.bot_id if config.bot_id is not None else _token_bot_id(settings),
        )
        return parse_update(payload, context)

    # -- outbound --------------------------------------------------------------------------

    async def send(self, settings: ConnectorSettings, message: OutboundMessage) -> SentMessage:
        """sendMessage, once per part; the first part replies to the user's message.

        ``idempotency_key`` is not used: the Bot API has no such thing, which is why sends
        are never retried inside this call (a retry after a lost answer shows the message
        twice). When a later part fails, the error's ``partial`` lists what was sent.
        """
        parts = _parts(message.text)
        before = message.sent_before
        done = len(before.message_ids) if before is not None else 0
        if before is None or not 0 < done < len(parts):
            return await self._send_parts(settings, message.target, parts, reply=True)
        # An earlier attempt delivered the first parts: send the rest after them.
        rest = await self._send_parts(
            settings, message.target, parts[done:], reply=False, before=before
        )
        return SentMessage(
            [*before.message_ids, *rest.message_ids], {**before.handle, **rest.handle}
        )

    async def stream_start(
        self, settings: ConnectorSettings, message: OutboundMessage
    ) -> SentMessage:
        shown = _stream_text(message.text) or PLACEHOLDER
        return await self._send_parts(settings, message.target, [shown], reply=True)

    async def stream_update(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """Edit the message to the answer so far (its first 4096 units). Skipped when the
        message already shows that text; "message is not modified" counts as done."""
        shown = _stream_text(text)
        handle = sent.handle
        if not shown or _digest(shown) == handle.get("shown") or handle.get("gone"):
            return sent
        try:
            await self._edit(settings, handle, shown)
        except api.TelegramApiError as exc:
            if not exc.edit_impossible:
                raise
            # Deleted by the user, or too old: stop editing; stream_finish sends new messages.
            return SentMessage(sent.message_ids, {**handle, "gone": True})
        return SentMessage(sent.message_ids, {**handle, "shown": _digest(shown)})

    async def stream_finish(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """Edit the streamed message to the final answer's first part, send the other parts."""
        parts = _parts(text)
        handle = sent.handle
        first_id = str(handle.get("message_id") or (sent.message_ids or [""])[0])
        target = ReplyTarget(
            chat_id=str(handle.get("chat_id", "")), thread_id=str(handle.get("thread_id", ""))
        )
        if handle.get("gone"):
            return await self._send_parts(settings, target, parts, reply=False)
        if _digest(parts[0]) != handle.get("shown"):
            try:
                await self._edit(settings, handle, parts[0])
            except api.TelegramApiError as exc:
                if not exc.edit_impossible:
                    raise
                return await self._send_parts(settings, target, parts, reply=False)
        # A retry after a failure part way: the parts an earlier attempt sent are not sent
        # again (``sent`` then lists them after the first message).
        already = sent.message_ids[1 : len(parts)]
        done = SentMessage([first_id, *already], {**handle, "shown": _digest(parts[0])})
        if len(parts) == len(done.message_ids):
            return done
        rest = await self._send_parts(
            settings, target, parts[len(done.message_ids) :], reply=False, before=done
        )
        handle = dict(done.handle)
        if "migrated_to_chat_id" in rest.handle:
            handle["migrated_to_chat_id"] = rest.handle["migrated_to_chat_id"]
        return SentMessage([*done.message_ids, *rest.message_ids], handle)

    async def typing(self, settings: ConnectorSettings, target: ReplyTarget) -> None:
        """sendChatAction "typing": shown for 5 s or until the bot's next message."""
        params: dict[str, Any] = {"chat_id": api.chat_id_param(target.chat_id), "action": "typing"}
        if target.thread_id.isdigit():
            params["message_thread_id"] = int(target.thread_id)
        await api.send_to_chat(settings, "sendChatAction", params)

    def callback_hint(self, settings: ConnectorSettings, callback_url: str) -> str:
        config: TelegramConfig = settings.config
        if config.mode == "polling":
            return (
                "Telegram: this connector polls getUpdates, so the callback URL is not used "
                "(a webhook set for the bot would stop polling). BotFather's /setprivacy "
                "decides which group messages arrive."
            )
        missing = "" if settings.secrets.webhook_secret else "Set a webhook secret first; then "
        return (
            f"Telegram: {missing}setWebhook is called from the admin action or "
            f"`manage.py telegram_webhook` with {callback_url} and the webhook secret (no "
            "need to paste it anywhere). BotFather's /setprivacy decides which group "
            "messages arrive: with privacy on, only commands, replies to the bot and "
            "@mentions."
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _send_parts(
        self,
        settings: ConnectorSettings,
        target: ReplyTarget,
        parts: list[str],
        *,
        reply: bool,
        before: SentMessage | None = None,
    ) -> SentMessage:
        """sendMessage per part (``reply``: the first answers ``target.message_id``). The
        handle names the first message sent, for edits, and a migrated chat's new id."""
        if not target.chat_id:
            raise DeliveryError(
                "no chat to send to (the reply target has no chat id)", permanent=True
            )
        chat_id = api.chat_id_param(target.chat_id)
        ids: list[str] = []
        handle: dict[str, Any] = {"chat_id": target.chat_id, "thread_id": target.thread_id}
        for index, part in enumerate(parts):
            params: dict[str, Any] = {"chat_id": chat_id, "text": part}
            if target.thread_id.isdigit():
                params["message_thread_id"] = int(target.thread_id)
            if reply and index == 0 and target.message_id.isdigit():
                # Still send when the user deleted their message meanwhile.
                params["reply_parameters"] = {
                    "message_id": int(target.message_id),
                    "allow_sending_without_reply": True,
                }
            try:
                result, moved = await api.send_to_chat(settings, "sendMessage", params)
            except api.TelegramApiError as exc:
                if ids or before is not None:
                    exc.partial = SentMessage(
                        [*(before.message_ids if before else []), *ids],
                        {**(before.handle if before else {}), **handle},
                    )
                raise
            if moved is not None:
                chat_id = moved
                handle.update(chat_id=str(moved), migrated_to_chat_id=str(moved))
            message_id = str(result.get("message_id", "")) if isinstance(result, dict) else ""
            ids.append(message_id)
            if index == 0:
                handle.update(message_id=message_id, shown=_digest(part))
        return SentMessage(ids, handle)

    async def _edit(self, settings: ConnectorSettings, handle: dict[str, Any], text: str) -> None:
        chat_id, message_id = str(handle.get("chat_id", "")), str(handle.get("message_id", ""))
        if not chat_id or not message_id.isdigit():
            raise DeliveryError(
                "cannot edit the streamed message: its handle lacks chat_id or message_id",
                permanent=True,
            )
        params = {
            "chat_id": api.chat_id_param(chat_id),
            "message_id": int(message_id),
            "text": text,
        }
        try:
            # No retries here even though edits are safe to repeat: a 429 must reach the
            # caller with its retry_after (Telegram puts it in the body, not in a header).
            await api.call(settings, "editMessageText", params)
        except api.TelegramApiError as exc:
            if not exc.not_modified:
                raise


def _parts(text: str) -> list[str]:
    """The messages that carry ``text``. Parts of only whitespace are left out: Telegram
    trims every message and refuses an empty one (only a pathological run of 4096 spaces, or
    such a run at the end of the text, makes one)."""
    parts = [part for part in split_text(text, MAX_MESSAGE_UNITS) if part.strip()]
    if not parts:
        raise DeliveryError(
            "the reply is empty: Telegram cannot send an empty message", permanent=True
        )
    return parts


def _token_bot_id(settings: ConnectorSettings) -> int | None:
    """A bot's token starts with its user id ("123456789:AA..."): the id, when not set."""
    head = str(getattr(settings.secrets, "bot_token", "")).partition(":")[0]
    return int(head) if head.isdigit() else None


def _digest(text: str) -> str:
    """What the handle keeps of the text a message shows: enough to skip an edit to the same
    text, without storing a copy of the answer wherever the handle is persisted."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _stream_text(text: str) -> str:
    """What a streamed message shows of the answer so far: as much as one message holds."""
    shown = utf16_prefix(text, MAX_MESSAGE_UNITS)
    return shown if shown.strip() else ""


if TYPE_CHECKING:
    _CHECK: Adapter = TelegramAdapter()  # mypy proves the class keeps to the contract
