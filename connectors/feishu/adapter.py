"""Feishu / Lark adapter: event subscription in webhook mode (schema 2.0) and the IM API.

Inbound (protocols.md A.1-A.6): an encrypted body (``{"encrypt": ...}``, present when an
Encrypt Key is configured) is decrypted with AES-256-CBC; URL verification is answered at
once; events are authenticated by the ``X-Lark-Signature`` header (when an Encrypt Key is
set) and the Verification Token, and refused outside a timestamp window.

Outbound (A.7): a tenant_access_token per app, cached in the process; replies through the
reply API with a ``uuid`` derived from the idempotency key, so a retried send makes one
message; streaming through an interactive card updated with PATCH.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from Crypto.Cipher import AES
from pydantic import Field

from assistant_site import http
from connectors.base import (
    ConnectorSettings,
    DeliveryError,
    FailureScope,
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
from connectors.feishu import payloads

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"  # noqa: S105  (a URL path)
MESSAGES_PATH = "/open-apis/im/v1/messages"
BOT_INFO_PATH = "/open-apis/bot/v3/info"

SIGNATURE_HEADER = "X-Lark-Signature"
TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"

# Size limits of a message's ``content`` (protocols.md A.7): text 150 KB, card 30 KB. We
# measure the content as it travels: the card (or {"text": ...}) is a JSON document written
# as a JSON string inside the request body, so each character is escaped twice ("\"" is 4
# bytes, a control character up to 7) and a CJK character is 3 bytes, an emoji 4. Budgets
# stay below 150 KiB and 30 KiB for what Feishu adds around them.
TEXT_CONTENT_BYTES = 150_000
CARD_CONTENT_BYTES = 29_000

# Tenant tokens live 2 h (``expire`` says how long is left). Renew 10 minutes early, as the
# SDK does; Feishu hands out a new token once less than 30 minutes remain.
TOKEN_MARGIN_S = 600.0

# Codes that mean "this token is no good": fetch a new one and try once more.
# 99991661 missing/malformed token, 99991663 invalid tenant token, 99991665 invalid tenant
# code, 99991677 expired. (99991664 concerns app tokens, which we never send.)
TOKEN_CODES = frozenset({99991661, 99991663, 99991665, 99991677})
# "Too many requests": the frequency limit (99991400), the IM send limit (230020) and the
# create-message limits (11232, 11233).
RATE_LIMIT_CODES = frozenset({99991400, 230020, 11232, 11233})
# What an administrator (or nobody) must do; repeating the call cannot help.
PERMANENT_HINTS: dict[int, str] = {
    230001: "Feishu refused the message content as invalid",
    230002: "the bot is not in this group: add the bot to the group",
    230006: "the app's bot capability is off: enable Bot under Features in the developer "
    "console and publish a new version",
    230011: "the message was recalled",
    230013: "the user is outside the app's availability scope: widen Availability in the "
    "developer console (Version Management & Release) and publish a new version",
    230025: "the message is longer than Feishu accepts",
    230099: "Feishu refused the card",
    99991401: "the server's IP address is not in the app's IP allowlist (Security Settings)",
    99991672: "the app lacks a permission scope: grant im:message:send_as_bot (and "
    "im:message, im:message:update for streaming) under Permissions & Scopes, then publish "
    "a new version",
}
# Permanent refusals that concern one chat or one message, not the connector's setup.
MESSAGE_CODES: dict[int, FailureScope] = {
    230001: "message",
    230011: "message",
    230025: "message",
    230099: "message",
    230002: "chat",
    230013: "chat",
}
CARD_PLACEHOLDER = "…"


class FeishuConfig(PlatformConfig):
    app_id: str = Field(pattern=r"^cli_[0-9A-Za-z]+$", max_length=64, description="cli_...")
    # The bot's own open_id (GET /open-apis/bot/v3/info, see bot_identity): the only sound
    # way to tell that a group message @-mentions the bot. Empty until known: then no group
    # message counts as mentioning the bot.
    bot_open_id: str = Field(pattern=r"^(ou_[0-9A-Za-z_-]+)?$", max_length=100)
    max_age_s: int = Field(default=300, ge=30, le=86_400)
    reply_in_thread: bool = False
    # webhook: Feishu pushes events to the callback URL (needs a public HTTPS address).
    # long_connection: the connectors_poll process holds a WebSocket to Feishu instead.
    mode: Literal["webhook", "long_connection"] = "webhook"


class FeishuSecrets(PlatformSecrets):
    app_secret: str = Field(min_length=1, max_length=256)
    verification_token: str = Field(default="", max_length=256)
    encrypt_key: str = Field(default="", max_length=256)


# --- inbound: decryption and checks ------------------------------------------------------------


def decrypt(encrypt_key: str, encrypted: str) -> str:
    """The plaintext of an ``encrypt`` field (protocols.md A.2), ValueError if it is not one.

    AES-256-CBC, key = SHA-256 of the Encrypt Key, the IV is the first block of the
    base64-decoded payload, PKCS#7 padding; the same checks as the SDK's AESCipher.
    """
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(raw) < 2 * AES.block_size or len(raw) % AES.block_size:
        raise ValueError("invalid ciphertext length")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    cipher = AES.new(key, AES.MODE_CBC, iv=raw[: AES.block_size])
    plain = cipher.decrypt(raw[AES.block_size :])
    pad = plain[-1]
    if not 1 <= pad <= AES.block_size or plain[-pad:] != bytes([pad]) * pad:
        raise ValueError("invalid padding")
    return plain[:-pad].decode()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``X-Lark-Signature``: SHA-256 (not an HMAC) of timestamp + nonce + key, then the raw
    body bytes as received (never re-serialized JSON)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _json_object(text: str | bytes, field: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise RequestRejected(400, field, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise RequestRejected(400, field, f"{what} is not a JSON object")
    return value


# --- outbound: tokens, errors, splitting -------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


# Per process, keyed by (API base URL, app id). Several valid tokens may coexist, so workers
# fetching their own and the occasional duplicate fetch are harmless; no lock is held while
# fetching (each worker call may run in its own event loop).
_TOKENS: dict[tuple[str, str], _Token] = {}
_TOKENS_LOCK = threading.Lock()


def forget_tokens() -> None:
    """Drop every cached tenant token (tests; rotating an App Secret)."""
    with _TOKENS_LOCK:
        _TOKENS.clear()


def _retry_after(response: http.HttpResponse) -> float | None:
    for name in ("x-ogw-ratelimit-reset", "retry-after"):
        value = response.headers.get(name, "").strip()
        try:
            seconds = float(value)
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _body(response: http.HttpResponse) -> dict[str, Any] | None:
    try:
        value = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _code(body: dict[str, Any] | None) -> int | None:
    code = body.get("code") if body is not None else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _failure(response: http.HttpResponse, what: str) -> DeliveryError:
    """The DeliveryError for an answer that is not a success, classified by its code first:
    Feishu reports most failures with HTTP 400, some with HTTP 200, all with a code."""
    body = _body(response)
    code = _code(body)
    message = str((body or {}).get("msg") or response.reason or "").strip()
    log_id = response.headers.get("x-tt-logid", "")
    said = f"code {code}: {message}" if code is not None else f"HTTP {response.status}"
    if code is None and message:
        said += f": {message}"
    detail = f"{what}: Feishu answered {said}" + (f" (log id {log_id})" if log_id else "")
    if response.status == 429 or code in RATE_LIMIT_CODES:
        return DeliveryError(f"{detail}; rate limited", retry_after_s=_retry_after(response))
    if response.status >= 500:
        return DeliveryError(f"{detail}; a temporary failure")
    if code in TOKEN_CODES:
        return DeliveryError(f"{detail}; a new tenant_access_token was refused as well")
    if code is None:
        return DeliveryError(
            f"{detail}; this is not the Feishu Open API: check the connector's API base URL",
            permanent=True,
        )
    hint = PERMANENT_HINTS.get(code)
    scope = MESSAGE_CODES.get(code, "connector")
    return DeliveryError(f"{detail}" + (f"; {hint}" if hint else ""), permanent=True, scope=scope)


@functools.lru_cache(maxsize=4096)
def _char_cost(char: str) -> int:
    once = json.dumps(char, ensure_ascii=False)[1:-1]
    twice = json.dumps(once, ensure_ascii=False)[1:-1]
    return len(twice.encode("utf-8", errors="replace"))


def _cost(char: str) -> int:
    # Printable ASCII other than " and \ is the common case: one byte.
    if " " <= char <= "~" and char not in '"\\':
        return 1
    return _char_cost(char)


def _encoded_size(content: str) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8", errors="replace"))


def _clean(text: str) -> str:
    # A lone surrogate cannot be encoded as UTF-8 (the request would fail): make it U+FFFD.
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _fits(text: str, start: int, room: int) -> int:
    """The end of the longest run of ``text`` from ``start`` whose escaped size is ``room``
    bytes at most."""
    used, end = 0, start
    while end < len(text):
        used += _cost(text[end])
        if used > room:
            break
        end += 1
    return end


def _nice_cut(text: str, start: int, end: int) -> int:
    """Where to cut ``text[start:end]`` (which does not hold the whole rest): after the last
    line break or blank of its second half, else at ``end``. Nothing is dropped."""
    floor = start + (end - start) // 2
    for separator in ("\n", " "):
        at = text.rfind(separator, floor, end)
        if at >= 0:
            return at + 1
    return end


def split_text(text: str, room: int) -> list[str]:
    """``text`` in parts of at most ``room`` escaped bytes each; the parts concatenate back
    to ``text``."""
    parts: list[str] = []
    start = 0
    while start < len(text):
        end = _fits(text, start, room)
        if end <= start:  # not even one character fits: cannot happen with sane budgets
            end = start + 1
        if end < len(text):
            end = _nice_cut(text, start, end)
        parts.append(text[start:end])
        start = end
    return parts or [""]


# Feishu turns <at user_id="..."></at> in a bot's text or card into a real @-mention, and
# <at user_id="all"> notifies everyone in the group. The answer comes from a model, which a
# document or a user can instruct: the tag is defused with an invisible zero-width space, so
# it shows as written and notifies nobody.
_AT_TAG = re.compile(r"<(?=\s*at[\s>/])", re.IGNORECASE)


def defuse_mentions(text: str) -> str:
    return _AT_TAG.sub("<\u200b", text)


def card_content(text: str) -> str:
    """An interactive card (JSON 1.0) showing ``text`` as Markdown, as a ``content`` string.

    ``update_multi`` is what allows updating the card (PATCH) later: it must be declared in
    the card sent and in every update.
    """
    card = {
        "config": {"update_multi": True, "wide_screen_mode": True},
        "elements": [{"tag": "markdown", "content": defuse_mentions(text) or CARD_PLACEHOLDER}],
    }
    return json.dumps(card, ensure_ascii=False, separators=(",", ":"))


def text_content(text: str) -> str:
    return json.dumps({"text": defuse_mentions(text)}, ensure_ascii=False, separators=(",", ":"))


_CARD_ROOM = CARD_CONTENT_BYTES - _encoded_size(card_content("x")) + 1
_TEXT_ROOM = TEXT_CONTENT_BYTES - _encoded_size(text_content(""))


def message_uuid(idempotency_key: str, kind: str, index: int) -> str:
    """Feishu's ``uuid`` (at most 50 characters; the same uuid makes at most one message
    within an hour) for part ``index`` of kind ``kind`` of a reply: stable across retries."""
    digest = hashlib.sha256(f"{idempotency_key}\x00{kind}\x00{index}".encode()).hexdigest()
    return digest[:40]


# --- the adapter -------------------------------------------------------------------------------


class FeishuAdapter:
    """Feishu (open.feishu.cn) or Lark (open.larksuite.com, set as the API base URL)."""

    platform: ClassVar[str] = "feishu"
    label: ClassVar[str] = "Feishu / Lark"
    config_model: ClassVar[type[PlatformConfig]] = FeishuConfig
    secrets_model: ClassVar[type[PlatformSecrets]] = FeishuSecrets
    default_api_base_url: ClassVar[str] = "https://open.feishu.cn"
    # A card takes at most 5 updates a second.
    edit_interval_s: ClassVar[float] = 0.2
    # 7,000 characters of the costliest common kind (emoji, quotes, backslashes: 4 bytes each
    # once the card is a JSON string in the request) fill 28,000 of the 29,000 bytes we allow
    # a card (limit 30 KB); CJK text takes 3 bytes a character. The adapter still measures
    # what it sends and splits by bytes, so rarer characters (control characters, 7 bytes)
    # cannot overflow a card either.
    max_message_chars: ClassVar[int] = 7_000

    # -- inbound ---------------------------------------------------------------------------

    def verify(self, settings: ConnectorSettings, request: InboundRequest) -> Verified:
        """Decrypt, answer URL verification, check signature, token and timestamp (A.1-A.4)."""
        secrets: FeishuSecrets = settings.secrets
        body = _json_object(request.body, "body", "the request body")
        payload = body
        if "encrypt" in body:
            payload = self._decrypted(secrets, body["encrypt"])
        token = self._token(payload)
        if payload.get("type") == "url_verification":
            # Answered before any signature check, as Feishu signs no URL verification; the
            # answer is never encrypted.
            self._check_token(secrets, token)
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise RequestRejected(400, "challenge", "URL verification without a challenge")
            return Verified(immediate={"challenge": challenge})
        if secrets.encrypt_key:
            self._check_signature(secrets, request)
        elif not secrets.verification_token:
            # Without either secret anybody could make the bot answer anything.
            raise RequestRejected(
                401,
                "token",
                "no Verification Token or Encrypt Key is configured: copy them from Events "
                "and callbacks > Encryption strategy in the developer console",
                signature=True,
            )
        self._check_token(secrets, token)
        self._check_timestamp(settings.config, request)
        return Verified(payload=payload)

    @staticmethod
    def _decrypted(secrets: FeishuSecrets, encrypted: Any) -> dict[str, Any]:
        if not secrets.encrypt_key:
            raise RequestRejected(
                400,
                "encrypt",
                "the request is encrypted but no Encrypt Key is configured: copy it from "
                "Events and callbacks > Encryption strategy",
            )
        if not isinstance(encrypted, str) or not encrypted:
            raise RequestRejected(400, "encrypt", "encrypt is not a non-empty string")
        try:
            plaintext = decrypt(secrets.encrypt_key, encrypted)
        except (ValueError, UnicodeDecodeError):
            raise RequestRejected(
                400, "encrypt", "encrypt does not decrypt with the configured Encrypt Key"
            ) from None
        return _json_object(plaintext, "encrypt", "the decrypted payload")

    @staticmethod
    def _token(payload: dict[str, Any]) -> str | None:
        # Schema 2.0 events carry it in the header; v1 events and URL verification on top.
        header = payload.get("header")
        if "schema" in payload and isinstance(header, dict):
            token = header.get("token")
        else:
            token = payload.get("token")
        return token if isinstance(token, str) else None

    @staticmethod
    def _check_token(secrets: FeishuSecrets, token: str | None) -> None:
        if not secrets.verification_token:
            return
        if token is None or not _same(token, secrets.verification_token):
            raise RequestRejected(
                401, "token", "the Verification Token does not match", signature=True
            )

    @staticmethod
    def _check_signature(secrets: FeishuSecrets, request: InboundRequest) -> None:
        given = request.header(SIGNATURE_HEADER) or ""
        expected = signature(
            request.header(TIMESTAMP_HEADER) or "",
            request.header(NONCE_HEADER) or "",
            secrets.encrypt_key,
            request.body,
        )
        if not given or not _same(given.strip().lower(), expected):
            raise RequestRejected(
                401, SIGNATURE_HEADER, "the request signature does not match", signature=True
            )

    @staticmethod
    def _check_timestamp(config: FeishuConfig, request: InboundRequest) -> None:
        value = request.header(TIMESTAMP_HEADER)
        if value is None:
            return
        try:
            sent_at = float(value.strip())
        except ValueError:
            raise RequestRejected(401, TIMESTAMP_HEADER, "the timestamp is not a number") from None
        if sent_at > 100_000_000_000:  # milliseconds, not seconds
            sent_at /= 1000
        now = request.received_at or time.time()
        if abs(now - sent_at) > config.max_age_s:
            raise RequestRejected(
                401,
                TIMESTAMP_HEADER,
                f"the request was sent {now - sent_at:.0f} s from now, outside the "
                f"{config.max_age_s} s window (replayed, or a clock is wrong)",
            )

    def parse(self, settings: ConnectorSettings, payload: dict[str, Any]) -> list[InboundItem]:
        """See :mod:`connectors.feishu.payloads`; never raises on a JSON object."""
        return payloads.items_for(settings, payload)

    # -- outbound --------------------------------------------------------------------------

    async def send(self, settings: ConnectorSettings, message: OutboundMessage) -> SentMessage:
        """Text messages replying to the message answered (several for a long text)."""
        parts = split_text(_clean(message.text), _TEXT_ROOM)
        ids = [
            await self._post_message(
                settings,
                message.target,
                "text",
                text_content(part),
                message_uuid(message.idempotency_key, "text", index),
            )
            for index, part in enumerate(parts)
        ]
        return SentMessage(message_ids=ids)

    async def stream_start(
        self, settings: ConnectorSettings, message: OutboundMessage
    ) -> SentMessage:
        """Reply with a card showing the text so far (what fits in one card)."""
        text = _clean(message.text)
        shown = text[: _fits(text, 0, _CARD_ROOM)]
        target = message.target
        message_id = await self._post_message(
            settings,
            target,
            "interactive",
            card_content(shown),
            message_uuid(message.idempotency_key, "card", 0),
        )
        handle = {
            "card_message_id": message_id,
            "chat_id": target.chat_id,
            "reply_to": target.message_id,
            "thread_id": target.thread_id,
            "key": message.idempotency_key,
            "shown": shown,
        }
        return SentMessage(message_ids=[message_id], handle=handle)

    async def stream_update(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """Rewrite the card with the text so far (the part that fits)."""
        text = _clean(text)
        shown = text[: _fits(text, 0, _CARD_ROOM)]
        return await self._show(settings, sent, shown)

    async def stream_finish(
        self, settings: ConnectorSettings, sent: SentMessage, text: str
    ) -> SentMessage:
        """The card shows exactly ``text``, or its first part and the rest follows as text
        messages; answers the card's id and theirs."""
        text = _clean(text)
        end = _fits(text, 0, _CARD_ROOM)
        if end < len(text):
            end = _nice_cut(text, 0, end)
        sent = await self._show(settings, sent, text[:end])
        handle = sent.handle
        target = ReplyTarget(
            str(handle.get("chat_id", "")),
            str(handle.get("reply_to", "")),
            str(handle.get("thread_id", "")),
        )
        key = str(handle.get("key") or sent.message_ids[0])
        rest = split_text(text[end:], _TEXT_ROOM) if end < len(text) else []
        ids = [
            await self._post_message(
                settings, target, "text", text_content(part), message_uuid(key, "rest", index)
            )
            for index, part in enumerate(rest)
        ]
        return SentMessage(message_ids=[sent.message_ids[0], *ids], handle=handle)

    async def typing(self, settings: ConnectorSettings, target: ReplyTarget) -> None:
        """Feishu has no typing indicator for bots."""

    def callback_hint(self, settings: ConnectorSettings, callback_url: str) -> str:
        host = settings.api_base_url.removeprefix("https://").removeprefix("http://")
        console = "open.larksuite.com" if "larksuite" in host else "open.feishu.cn"
        return (
            f"In the developer console ({console}/app), open your app > Events and callbacks > "
            f"Event configuration, choose 'Send events to developer server' and paste "
            f"{callback_url} as the request URL; add the event im.message.receive_v1 "
            "(Receive messages), and grant the scopes im:message.p2p_msg:readonly, "
            "im:message.group_at_msg:readonly and im:message:send_as_bot, then publish a "
            "new version."
        )

    async def bot_identity(self, settings: ConnectorSettings) -> dict[str, Any]:
        """The bot's own data from ``GET /open-apis/bot/v3/info``: ``open_id`` (what
        ``FeishuConfig.bot_open_id`` takes), ``app_name``, ``avatar_url``,
        ``activate_status``... Only the App ID and Secret of ``settings`` are used."""
        body = await self._api(settings, "GET", BOT_INFO_PATH, None, "reading the bot's info")
        bot = body.get("bot")
        if not isinstance(bot, dict) or not isinstance(bot.get("open_id"), str):
            raise DeliveryError(
                "reading the bot's info: Feishu answered no bot; enable the bot capability "
                "of the app (Features > Bot) and publish a new version",
                permanent=True,
            )
        return bot

    # -- Open API calls ----------------------------------------------------------------------

    async def _show(self, settings: ConnectorSettings, sent: SentMessage, text: str) -> SentMessage:
        if not sent.message_ids:
            raise DeliveryError("no streamed card to update", permanent=True)
        if text == sent.handle.get("shown"):
            return sent  # editing to the same text is a success, and costs nothing
        message_id = sent.message_ids[0]
        await self._api(
            settings,
            "PATCH",
            f"{MESSAGES_PATH}/{quote(message_id, safe='')}",
            {"content": card_content(text)},
            "updating the streamed card",
        )
        return SentMessage(
            message_ids=list(sent.message_ids), handle={**sent.handle, "shown": text}
        )

    async def _post_message(
        self,
        settings: ConnectorSettings,
        target: ReplyTarget,
        msg_type: str,
        content: str,
        uuid: str,
    ) -> str:
        body: dict[str, Any] = {"content": content, "msg_type": msg_type, "uuid": uuid}
        if target.message_id:
            path = f"{MESSAGES_PATH}/{quote(target.message_id, safe='')}/reply"
            body["reply_in_thread"] = bool(settings.config.reply_in_thread)
            what = "replying"
        else:
            path = f"{MESSAGES_PATH}?receive_id_type=chat_id"
            body["receive_id"] = target.chat_id
            what = "sending a message"
        answer = await self._api(settings, "POST", path, body, what)
        data = answer.get("data")
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise DeliveryError(f"{what}: Feishu answered success without a message id")
        return message_id

    async def _api(
        self,
        settings: ConnectorSettings,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        what: str,
    ) -> dict[str, Any]:
        """One Open API call with the tenant token; on a refused token, one new token and
        one more try. Answers the JSON body of a success (``code`` 0)."""
        token = await self._tenant_token(settings)
        response = await self._call(
            settings, method=method, path=path, body=body, what=what, token=token
        )
        answer = _body(response)
        if _code(answer) in TOKEN_CODES:
            token = await self._tenant_token(settings, refused=token)
            response = await self._call(
                settings, method=method, path=path, body=body, what=what, token=token
            )
            answer = _body(response)
        if response.ok and answer is not None and _code(answer) == 0:
            return answer
        raise _failure(response, what)

    @staticmethod
    async def _call(
        settings: ConnectorSettings,
        *,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        what: str,
        token: str | None = None,
    ) -> http.HttpResponse:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            # No retries here: the delivery queue retries, honouring DeliveryError.
            return await http.request(
                method, settings.api_base_url + path, headers=headers, json=body
            )
        except http.OutboundHttpError as exc:
            raise DeliveryError(f"{what}: {exc.message}", permanent=exc.permanent) from exc

    async def _tenant_token(self, settings: ConnectorSettings, refused: str = "") -> str:
        """The app's tenant_access_token, from the cache unless it is ``refused``."""
        key = (settings.api_base_url, settings.config.app_id)
        with _TOKENS_LOCK:
            cached = _TOKENS.get(key)
            if cached is not None and cached.value == refused:
                del _TOKENS[key]
                cached = None
        if cached is not None and time.monotonic() < cached.renew_at:
            return cached.value
        credentials = {"app_id": settings.config.app_id, "app_secret": settings.secrets.app_secret}
        what = "getting a tenant_access_token"
        response = await self._call(
            settings, method="POST", path=TOKEN_PATH, body=credentials, what=what
        )
        answer = _body(response)
        token = (answer or {}).get("tenant_access_token")
        expire = (answer or {}).get("expire")
        if _code(answer) != 0 or not isinstance(token, str) or not token:
            error = _failure(response, what)
            if error.permanent:
                error = DeliveryError(
                    f"{error.message}; check the App ID and App Secret (Credentials & Basic "
                    "Info in the developer console) and the API base URL",
                    permanent=True,
                )
            raise error
        lifetime = float(expire) if isinstance(expire, int | float) else 7200.0
        margin = TOKEN_MARGIN_S if lifetime > 2 * TOKEN_MARGIN_S else lifetime / 2
        with _TOKENS_LOCK:
            _TOKENS[key] = _Token(token, time.monotonic() + lifetime - margin)
        return token
