"""A protocol double of the Feishu / Lark Open API (IM part), and Feishu's event pushes.

It is NOT Feishu: it keeps chats in memory and answers in Feishu's wire format, so that
the connector can be tested byte for byte without a tenant. The reference is
/work/shared/reference/protocols.md, section A (source-checked against lark-oapi 1.7.5).

Endpoints
    ``POST /open-apis/auth/v3/tenant_access_token/internal`` issues ``t-...`` tokens for
    the double's app (``app_id``/``app_secret``), valid ``token_ttl_s`` seconds; as Feishu,
    it answers the same token until less than 30 minutes are left, then a new one (both
    stay valid). ``POST /open-apis/im/v1/messages/{message_id}/reply``,
    ``POST /open-apis/im/v1/messages?receive_id_type=chat_id``,
    ``PATCH /open-apis/im/v1/messages/{message_id}`` (interactive cards with
    ``"update_multi": true`` before and after), ``GET /open-apis/bot/v3/info``.

Wire format
    Every answer is JSON ``{"code": 0, "msg": "success", "data": {...}}`` (the token and bot
    endpoints put their fields on top, as Feishu does) with an ``X-Tt-Logid`` header.
    Failures carry ``code`` != 0, ``msg`` and ``error.log_id``/``error.troubleshooter``,
    with HTTP 400 (Feishu answers most business and token errors with 400; the SDK's
    bot_identity module notes a missing token is "rejected with 400"), 429 for the
    frequency limit (``x-ogw-ratelimit-limit``/``x-ogw-ratelimit-reset`` headers, body
    ``{"code":99991400,"msg":"request trigger frequency limit"}``) and 5xx for faults.

Rules
    ``Authorization: Bearer t-...`` must name a token the double issued and that has
    neither expired nor been revoked: a missing or malformed header answers 99991661, any
    other token 99991663 ("Invalid access token"), both with HTTP 400. Feishu uses 99991663
    for invalid and expired tenant tokens alike, and so does the double.
    A ``uuid`` seen before (within an hour) answers the message it made, and makes none.
    ``content`` is checked: a JSON object, ``{"text": str}`` for text, at most 150 KB for
    text and 30 KB for cards and posts (230025). Replies need a message the double knows:
    one sent by a user (``user_message``/``seed_message``) or by the app (230001 else); a
    recalled one answers 230011. A chat the double does not know answers 230002 (the bot
    is not in it). The codes of rarer refusals (PATCH of a non-card, a card without
    ``update_multi``: 230001) are the double's choice. With ``enforce_patch_rate``, more
    than 5 PATCHes of one message within a second answer 230020.

What tests read
    ``requests`` (every request: method, path, query, headers, JSON body), ``messages(chat)``
    (the chat as a user sees it, cards after their updates, recalled messages gone),
    ``bot_texts(chat)``, ``token_requests``.

Faults (``inject(name, count=n, on=endpoint, **params)``), each used by the next n API calls
(not the token endpoint, unless ``on="token"``; ``on`` is one of token, reply, create,
patch, bot_info)
    ``429`` (reset_s=1, limit=50), ``500``, ``503``, ``token_expired`` (the call's valid
    token is revoked and the call answers 99991663), ``code`` (code=..., msg=..., status=400).

Events
    :func:`message_event` builds an ``im.message.receive_v1`` payload, :meth:`FeishuDouble.
    user_message` builds one and registers its message, and :func:`event_request` turns a
    payload into the body and headers Feishu would POST: encrypted with the Encrypt Key
    (AES-256-CBC, as lark-oapi's AESCipher decrypts) and signed (``X-Lark-Signature``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from Crypto.Cipher import AES

from tests.doubles.serving import ThreadedDouble

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
FAULTS = frozenset({"429", "500", "503", "token_expired", "code"})
ENDPOINTS = frozenset({"token", "reply", "create", "patch", "bot_info"})
MSG_TYPES = frozenset(
    {
        "text",
        "post",
        "image",
        "file",
        "audio",
        "media",
        "sticker",
        "interactive",
        "share_chat",
        "share_user",
    }
)
RECEIVE_ID_TYPES = frozenset({"open_id", "union_id", "user_id", "email", "chat_id"})
TEXT_LIMIT_BYTES = 150 * 1024
CARD_LIMIT_BYTES = 30 * 1024
UUID_WINDOW_S = 3600.0
RENEW_BELOW_S = 1800.0  # the token endpoint hands out a new token below 30 minutes left

MSG_MISSING_TOKEN = (
    "Missing access token for authorization. Please make a request with token attached."
)
MSG_INVALID_TOKEN = (
    "Invalid access token for authorization. Please make a request with token attached."
)


# --- events as Feishu pushes them --------------------------------------------------------------


def encrypt(encrypt_key: str, plaintext: str, iv: bytes | None = None) -> str:
    """``plaintext`` as Feishu encrypts events: AES-256-CBC with key SHA-256(encrypt_key),
    a random IV put before the ciphertext, PKCS#7 padding, base64."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = iv if iv is not None else secrets.token_bytes(AES.block_size)
    data = plaintext.encode()
    pad = AES.block_size - len(data) % AES.block_size
    cipher = AES.new(key, AES.MODE_CBC, iv=iv)
    return base64.b64encode(iv + cipher.encrypt(data + bytes([pad]) * pad)).decode()


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``X-Lark-Signature``: sha256(timestamp + nonce + encrypt_key, then the raw body)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


@dataclass(frozen=True)
class EventRequest:
    """An event push: ``body`` (the exact bytes) and ``headers``, e.g. for
    ``InboundRequest(body=r.body, headers=r.headers)`` or Django's test client
    (``client.post(url, r.body, content_type="application/json", headers=r.headers)``)."""

    body: bytes
    headers: dict[str, str]


def event_request(
    payload: Mapping[str, Any] | str | bytes,
    *,
    encrypt_key: str = "",
    timestamp: int | str | None = None,
    nonce: str | None = None,
) -> EventRequest:
    """The request Feishu sends for ``payload``: encrypted when an Encrypt Key is given
    (the body is then ``{"encrypt": "..."}``), with the timestamp and nonce headers, and
    the signature over the exact body when an Encrypt Key is given."""
    if isinstance(payload, bytes):
        plain = payload
    elif isinstance(payload, str):
        plain = payload.encode()
    else:
        plain = json.dumps(payload, ensure_ascii=False).encode()
    body = plain
    if encrypt_key:
        body = json.dumps({"encrypt": encrypt(encrypt_key, plain.decode())}).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    once = nonce if nonce is not None else secrets.token_hex(8)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": once,
    }
    if encrypt_key:
        headers["X-Lark-Signature"] = sign(stamp, once, encrypt_key, body)
    return EventRequest(body=body, headers=headers)


def _hex_id(prefix: str, size: int = 32) -> str:
    return prefix + secrets.token_hex(size // 2)


def message_event(
    *,
    chat_id: str,
    text: str = "",
    message_id: str | None = None,
    chat_type: str = "p2p",
    message_type: str = "text",
    content: Mapping[str, Any] | None = None,
    sender_open_id: str = "ou_0b5ad2fa1b5c4c7a8f0e9d6c3b2a1908",
    sender_type: str = "user",
    mentions: list[dict[str, Any]] | None = None,
    token: str = "",
    app_id: str = "cli_a5f3d2c1b0e90001",
    event_id: str | None = None,
    root_id: str = "",
    parent_id: str = "",
    thread_id: str = "",
) -> dict[str, Any]:
    """An ``im.message.receive_v1`` event (schema 2.0) as Feishu pushes it; ``text`` makes a
    text message unless ``content`` (the content object) is given."""
    now_ms = str(int(time.time() * 1000))
    body = dict(content) if content is not None else {"text": text}
    message: dict[str, Any] = {
        "message_id": message_id or _hex_id("om_"),
        "create_time": now_ms,
        "update_time": now_ms,
        "chat_id": chat_id,
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps(body, ensure_ascii=False),
        "mentions": mentions or [],
        "user_agent": "Mozilla/5.0 (Macintosh) Lark/7.30.9 LarkLocale/zh_CN",
    }
    for name, value in (("root_id", root_id), ("parent_id", parent_id), ("thread_id", thread_id)):
        if value:
            message[name] = value
    if not mentions:
        del message["mentions"]
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or secrets.token_hex(16),
            "event_type": "im.message.receive_v1",
            "create_time": now_ms,
            "token": token,
            "app_id": app_id,
            "tenant_key": "2ca1d211f64f6438",
        },
        "event": {
            "sender": {
                "sender_id": {
                    "union_id": "on_" + hashlib.md5(sender_open_id.encode()).hexdigest(),  # noqa: S324
                    "open_id": sender_open_id,
                },
                "sender_type": sender_type,
                "tenant_key": "2ca1d211f64f6438",
            },
            "message": message,
        },
    }


def mention(key: str, open_id: str, name: str) -> dict[str, Any]:
    """One entry of ``message.mentions``: placeholder ``key`` (``@_user_1``) for ``open_id``."""
    return {
        "key": key,
        "id": {"union_id": "on_" + open_id[3:], "open_id": open_id},
        "name": name,
        "tenant_key": "2ca1d211f64f6438",
    }


# --- what a user sees --------------------------------------------------------------------------


def _card_text(card: dict[str, Any]) -> str:
    elements = card.get("elements")
    if not isinstance(elements, list):  # Card JSON 2.0
        body = card.get("body")
        elements = body.get("elements") if isinstance(body, dict) else []
    texts: list[str] = []
    for element in elements if isinstance(elements, list) else []:
        if not isinstance(element, dict):
            continue
        if element.get("tag") == "markdown" and isinstance(element.get("content"), str):
            texts.append(element["content"])
        elif element.get("tag") == "div" and isinstance(element.get("text"), dict):
            texts.append(str(element["text"].get("content", "")))
    return "\n".join(texts)


def _post_text(content: dict[str, Any]) -> str:
    document = content
    if not isinstance(document.get("content"), list):
        document = next((v for v in content.values() if isinstance(v, dict)), {})
    lines = [str(document["title"])] if document.get("title") else []
    for paragraph in document.get("content") or []:
        lines.append(
            "".join(
                str(element.get("text", "")) for element in paragraph if isinstance(element, dict)
            )
        )
    return "\n".join(lines)


def shown_text(msg_type: str, content: str) -> str:
    """The words a user reads in a message of ``msg_type`` with this ``content`` string."""
    try:
        value = json.loads(content)
    except ValueError:
        return content
    if not isinstance(value, dict):
        return content
    if msg_type == "text":
        return str(value.get("text", ""))
    if msg_type == "interactive":
        return _card_text(value)
    if msg_type == "post":
        return _post_text(value)
    return ""


@dataclass
class Message:
    """One message in a chat, as the double keeps it (``content`` after updates)."""

    message_id: str
    chat_id: str
    msg_type: str
    content: str
    sender: str  # "user" or "app"
    sender_id: str
    created_ms: int
    root_id: str = ""
    parent_id: str = ""
    thread_id: str = ""
    uuid: str = ""
    updates: int = 0
    recalled: bool = False
    patch_times: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return shown_text(self.msg_type, self.content)

    def data(self, app_id: str, tenant_key: str) -> dict[str, Any]:
        """The message as the Open API describes it (``data`` of a send or reply)."""
        sender = (
            {"id": app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": tenant_key}
            if self.sender == "app"
            else {
                "id": self.sender_id,
                "id_type": "open_id",
                "sender_type": "user",
                "tenant_key": tenant_key,
            }
        )
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "msg_type": self.msg_type,
            "create_time": str(self.created_ms),
            "update_time": str(self.created_ms),
            "deleted": self.recalled,
            "updated": self.updates > 0,
            "chat_id": self.chat_id,
            "sender": sender,
            "body": {"content": self.content},
            "upper_message_id": "",
        }
        if self.thread_id:
            data["thread_id"] = self.thread_id
        return data


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes


@dataclass
class _Fault:
    name: str
    remaining: int
    on: str | None
    params: dict[str, Any]


@dataclass
class _Issued:
    value: str
    expires_at: float
    revoked: bool = False


class _AnswerNowError(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class FeishuDouble(ThreadedDouble):
    """The Feishu Open API on a loopback port, served from a thread; see the module doc."""

    label = "Feishu"

    def __init__(
        self,
        *,
        app_id: str = "cli_a5f3d2c1b0e90001",
        app_secret: str = "double-app-secret",  # noqa: S107  (the double's own app)
        bot_open_id: str = "ou_7d8a6e6df7621556ce0d21922b676706",
        bot_name: str = "Assistant",
        tenant_key: str = "2ca1d211f64f6438",
        token_ttl_s: float = 7200.0,
        enforce_patch_rate: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.bot_open_id = bot_open_id
        self.bot_name = bot_name
        self.tenant_key = tenant_key
        self.token_ttl_s = token_ttl_s
        self.enforce_patch_rate = enforce_patch_rate
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._tokens: dict[str, _Issued] = {}
        self._messages: dict[str, Message] = {}
        self._chats: dict[str, list[str]] = {}
        self._uuids: dict[str, tuple[str, float]] = {}

    # -- public API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What a connector takes as its API base URL."""
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(TOKEN_PATH, self._guarded(self._token))
        app.router.add_post(
            "/open-apis/im/v1/messages/{message_id}/reply", self._guarded(self._reply)
        )
        app.router.add_post("/open-apis/im/v1/messages", self._guarded(self._create))
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self._guarded(self._patch))
        app.router.add_get("/open-apis/bot/v3/info", self._guarded(self._bot_info))
        return app

    def inject(self, fault: str, *, count: int = 1, on: str | None = None, **params: Any) -> None:
        """Make the next ``count`` calls (to endpoint ``on``, or any API call but the token
        endpoint) fail with ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        if on is not None and on not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {on!r}; known: {', '.join(sorted(ENDPOINTS))}")
        if fault == "code" and "code" not in params:
            raise ValueError("the code fault needs code=...")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_Fault(fault, count, on, dict(params)))

    def reset(self) -> None:
        """Forget requests, faults, tokens and messages."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._tokens.clear()
            self._messages.clear()
            self._chats.clear()
            self._uuids.clear()

    def add_chat(self, chat_id: str) -> None:
        """A chat the bot is in (one where a user wrote is one too)."""
        with self._lock:
            self._chats.setdefault(chat_id, [])

    def seed_message(
        self,
        message_id: str,
        chat_id: str,
        *,
        text: str = "",
        sender_open_id: str = "ou_0b5ad2fa1b5c4c7a8f0e9d6c3b2a1908",
        thread_id: str = "",
    ) -> None:
        """A message a user wrote (so that the bot can reply to it)."""
        with self._lock:
            self._add(
                Message(
                    message_id=message_id,
                    chat_id=chat_id,
                    msg_type="text",
                    content=json.dumps({"text": text}, ensure_ascii=False),
                    sender="user",
                    sender_id=sender_open_id,
                    created_ms=int(time.time() * 1000),
                    thread_id=thread_id,
                )
            )

    def user_message(self, chat_id: str, text: str = "", **event: Any) -> dict[str, Any]:
        """An ``im.message.receive_v1`` payload for a user writing ``text`` in ``chat_id``
        (see :func:`message_event` for the options); its message is registered, so that
        the bot can reply to it."""
        event.setdefault("app_id", self.app_id)
        payload = message_event(chat_id=chat_id, text=text, **event)
        message = payload["event"]["message"]
        sender = payload["event"]["sender"]["sender_id"]["open_id"]
        with self._lock:
            self._add(
                Message(
                    message_id=message["message_id"],
                    chat_id=chat_id,
                    msg_type=message["message_type"],
                    content=message["content"],
                    sender="user",
                    sender_id=sender,
                    created_ms=int(message["create_time"]),
                    root_id=message.get("root_id", ""),
                    parent_id=message.get("parent_id", ""),
                    thread_id=message.get("thread_id", ""),
                )
            )
        return payload

    def recall(self, message_id: str) -> None:
        with self._lock:
            self._messages[message_id].recalled = True

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (as after an App Secret reset)."""
        with self._lock:
            for issued in self._tokens.values():
                issued.revoked = True

    def messages(self, chat_id: str) -> list[Message]:
        """The chat as a user sees it, oldest first: recalled messages gone, cards as last
        updated."""
        with self._lock:
            found = [self._messages[i] for i in self._chats.get(chat_id, [])]
        return [message for message in found if not message.recalled]

    def bot_messages(self, chat_id: str) -> list[Message]:
        return [message for message in self.messages(chat_id) if message.sender == "app"]

    def bot_texts(self, chat_id: str) -> list[str]:
        """The words of each message the bot shows in ``chat_id``."""
        return [message.text for message in self.bot_messages(chat_id)]

    def message(self, message_id: str) -> Message:
        with self._lock:
            return self._messages[message_id]

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests to ``endpoint``: token, reply, create, patch or bot_info."""
        with self._lock:
            return [r for r in self.requests if _endpoint(r.method, r.path) == endpoint]

    @property
    def token_requests(self) -> int:
        return len(self.requests_to("token"))

    # -- serving -----------------------------------------------------------------------------

    def _guarded(
        self, answer: Callable[[web.Request, Any], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            raw = await request.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = None
            with self._lock:
                self.requests.append(
                    RecordedRequest(
                        method=request.method,
                        path=request.path,
                        query=dict(request.query),
                        headers=dict(request.headers),
                        json=body,
                        body=raw,
                    )
                )
            try:
                self._apply_fault(_endpoint(request.method, request.path), request)
                return await answer(request, body)
            except _AnswerNowError as early:
                return early.response

        return handler

    # -- answers -----------------------------------------------------------------------------

    def _log_id(self) -> str:
        return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(10).upper()

    def _ok(self, payload: dict[str, Any]) -> web.Response:
        return web.Response(
            body=json.dumps(payload, ensure_ascii=False).encode(),
            content_type="application/json",
            charset="utf-8",
            headers={"X-Tt-Logid": self._log_id()},
        )

    def _success(self, data: dict[str, Any]) -> web.Response:
        return self._ok({"code": 0, "msg": "success", "data": data})

    def _error(
        self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> _AnswerNowError:
        log_id = self._log_id()
        body = {
            "code": code,
            "msg": msg,
            "error": {
                "log_id": log_id,
                "troubleshooter": (
                    "排查建议查看(Troubleshooting suggestions): "
                    f"https://open.feishu.cn/search?code={code}&log_id={log_id}"
                ),
            },
        }
        return _AnswerNowError(
            web.Response(
                body=json.dumps(body, ensure_ascii=False).encode(),
                status=status,
                content_type="application/json",
                charset="utf-8",
                headers={"X-Tt-Logid": log_id, **(headers or {})},
            )
        )

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                fits = fault.on == endpoint if fault.on else endpoint not in ("token", "")
                if fits:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _apply_fault(self, endpoint: str, request: web.Request) -> None:
        fault = self._take_fault(endpoint)
        if fault is None:
            return
        params = fault.params
        if fault.name == "429":
            reset = params.get("reset_s", 1)
            raise self._error(
                99991400,
                "request trigger frequency limit",
                status=429,
                headers={
                    "x-ogw-ratelimit-limit": str(params.get("limit", 50)),
                    "x-ogw-ratelimit-reset": str(reset),
                },
            )
        if fault.name in ("500", "503"):
            if fault.name == "503":
                raise _AnswerNowError(
                    web.Response(status=503, text="Service Unavailable", content_type="text/plain")
                )
            raise self._error(1000, "internal error (injected fault)", status=500)
        if fault.name == "token_expired":
            token = _bearer(request.headers.get("Authorization", ""))
            with self._lock:
                issued = self._tokens.get(token or "")
                if issued is not None:
                    issued.revoked = True
            raise self._error(99991663, MSG_INVALID_TOKEN)
        raise self._error(
            int(params["code"]),
            str(params.get("msg", "injected error")),
            status=int(params.get("status", 400)),
        )

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = _bearer(header)
        if token is None:
            raise self._error(99991661, MSG_MISSING_TOKEN)
        with self._lock:
            issued = self._tokens.get(token)
            valid = issued is not None and not issued.revoked and issued.expires_at > time.time()
        if not valid:
            raise self._error(99991663, MSG_INVALID_TOKEN)

    async def _token(self, request: web.Request, body: Any) -> web.Response:
        if not isinstance(body, dict) or not body.get("app_id") or not body.get("app_secret"):
            raise self._error(10003, "invalid param")
        if body["app_id"] != self.app_id:
            raise self._error(10003, "invalid param: app_id not found")
        if not secrets.compare_digest(str(body["app_secret"]), self.app_secret):
            raise self._error(10014, "app secret invalid")
        now = time.time()
        with self._lock:
            live = [
                t
                for t in self._tokens.values()
                if not t.revoked and t.expires_at - now >= RENEW_BELOW_S
            ]
            if live:
                issued = max(live, key=lambda t: t.expires_at)
            else:
                issued = _Issued("t-" + secrets.token_hex(20), now + self.token_ttl_s)
                self._tokens[issued.value] = issued
        expire = max(0, int(issued.expires_at - now))
        return self._ok(
            {"code": 0, "msg": "ok", "tenant_access_token": issued.value, "expire": expire}
        )

    async def _bot_info(self, request: web.Request, body: Any) -> web.Response:
        self._authorize(request)
        bot = {
            "activate_status": 2,
            "app_name": self.bot_name,
            "avatar_url": "https://s1-imfile.feishucdn.com/static-resource/v1/avatar~noop",
            "ip_white_list": [],
            "open_id": self.bot_open_id,
        }
        return self._ok({"code": 0, "msg": "ok", "bot": bot})

    def _checked_content(self, body: Any) -> tuple[str, str]:
        if not isinstance(body, dict):
            raise self._error(9499, "Bad Request")
        msg_type = body.get("msg_type")
        content = body.get("content")
        if not isinstance(msg_type, str) or msg_type not in MSG_TYPES:
            raise self._error(230001, "Your request contains an invalid request parameter.")
        if not isinstance(content, str):
            raise self._error(99992402, "field validation failed: content is required")
        try:
            value = json.loads(content)
        except ValueError:
            raise self._error(230001, "invalid message content: not JSON") from None
        if not isinstance(value, dict):
            raise self._error(230001, "invalid message content: not a JSON object")
        if msg_type == "text" and not isinstance(value.get("text"), str):
            raise self._error(230001, "invalid message content: text is required")
        limit = TEXT_LIMIT_BYTES if msg_type == "text" else CARD_LIMIT_BYTES
        if len(content.encode()) > limit:
            raise self._error(230025, "The message content exceeds the length limit.")
        return msg_type, content

    def _check_uuid(self, body: dict[str, Any]) -> str:
        uuid = body.get("uuid") or ""
        if not isinstance(uuid, str) or len(uuid) > 50:
            raise self._error(99992402, "field validation failed: uuid is at most 50 characters")
        return uuid

    def _deduplicated(self, uuid: str) -> web.Response | None:
        if not uuid:
            return None
        with self._lock:
            seen = self._uuids.get(uuid)
            if seen is None or time.time() - seen[1] > UUID_WINDOW_S:
                return None
            message = self._messages[seen[0]]
        return self._success(message.data(self.app_id, self.tenant_key))

    def _add(self, message: Message) -> None:
        # Holding the lock.
        self._messages[message.message_id] = message
        self._chats.setdefault(message.chat_id, []).append(message.message_id)

    def _new_message(self, *, chat_id: str, msg_type: str, content: str, uuid: str) -> Message:
        return Message(
            message_id=_hex_id("om_"),
            chat_id=chat_id,
            msg_type=msg_type,
            content=content,
            sender="app",
            sender_id=self.app_id,
            created_ms=int(time.time() * 1000),
            uuid=uuid,
        )

    async def _reply(self, request: web.Request, body: Any) -> web.Response:
        self._authorize(request)
        msg_type, content = self._checked_content(body)
        uuid = self._check_uuid(body)
        with self._lock:
            parent = self._messages.get(request.match_info["message_id"])
        if parent is None:
            raise self._error(230001, "Your request contains an invalid request parameter.")
        if parent.recalled:
            raise self._error(230011, "The message was withdrawn.")
        repeated = self._deduplicated(uuid)
        if repeated is not None:
            return repeated
        message = self._new_message(
            chat_id=parent.chat_id, msg_type=msg_type, content=content, uuid=uuid
        )
        message.root_id = parent.root_id or parent.message_id
        message.parent_id = parent.message_id
        if parent.thread_id or body.get("reply_in_thread") is True:
            message.thread_id = parent.thread_id or _hex_id("omt_", 14)
        with self._lock:
            self._add(message)
            if uuid:
                self._uuids[uuid] = (message.message_id, time.time())
        return self._success(message.data(self.app_id, self.tenant_key))

    async def _create(self, request: web.Request, body: Any) -> web.Response:
        self._authorize(request)
        id_type = request.query.get("receive_id_type", "")
        if id_type not in RECEIVE_ID_TYPES:
            raise self._error(99992402, "field validation failed: receive_id_type is invalid")
        msg_type, content = self._checked_content(body)
        uuid = self._check_uuid(body)
        receive_id = body.get("receive_id")
        if not isinstance(receive_id, str) or not receive_id:
            raise self._error(99992402, "field validation failed: receive_id is required")
        if id_type != "chat_id":
            raise self._error(230001, "the double only sends to chat_id receivers")
        with self._lock:
            known = receive_id in self._chats
        if not known:
            raise self._error(230002, "The bot can not be outside the group.")
        repeated = self._deduplicated(uuid)
        if repeated is not None:
            return repeated
        message = self._new_message(
            chat_id=receive_id, msg_type=msg_type, content=content, uuid=uuid
        )
        with self._lock:
            self._add(message)
            if uuid:
                self._uuids[uuid] = (message.message_id, time.time())
        return self._success(message.data(self.app_id, self.tenant_key))

    async def _patch(self, request: web.Request, body: Any) -> web.Response:
        self._authorize(request)
        with self._lock:
            message = self._messages.get(request.match_info["message_id"])
        if message is None or message.sender != "app":
            raise self._error(230001, "Your request contains an invalid request parameter.")
        if message.recalled:
            raise self._error(230011, "The message was withdrawn.")
        if message.msg_type != "interactive":
            raise self._error(230001, "only interactive (card) messages can be updated")
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise self._error(99992402, "field validation failed: content is required")
        content = body["content"]
        try:
            card = json.loads(content)
        except ValueError:
            raise self._error(230001, "invalid message content: not JSON") from None
        old = json.loads(message.content)
        if not (_update_multi(old) and _update_multi(card)):
            raise self._error(
                230001, "the card must declare config.update_multi=true before and after"
            )
        if len(content.encode()) > CARD_LIMIT_BYTES:
            raise self._error(230025, "The message content exceeds the length limit.")
        now = time.monotonic()
        with self._lock:
            recent = [t for t in message.patch_times if now - t < 1.0]
            if self.enforce_patch_rate and len(recent) >= 5:
                raise self._error(230020, "This operation triggers the frequency limit.")
            message.patch_times = [*recent, now]
            message.content = content
            message.updates += 1
        return self._success({})


def _update_multi(card: Any) -> bool:
    return isinstance(card, dict) and (card.get("config") or {}).get("update_multi") is True


def _bearer(header: str) -> str | None:
    scheme, _sep, token = header.partition(" ")
    if scheme != "Bearer" or not token.strip():
        return None
    return token.strip()


def _endpoint(method: str, path: str) -> str:
    if path == TOKEN_PATH:
        return "token"
    if path == "/open-apis/bot/v3/info":
        return "bot_info"
    if path.startswith("/open-apis/im/v1/messages"):
        if method == "PATCH":
            return "patch"
        return "reply" if path.endswith("/reply") else "create"
    return ""
