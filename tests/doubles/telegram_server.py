"""A protocol double of the Telegram Bot API (Bot API 10.0), for tests.

It answers ``/bot<token>/<method>`` in the Bot API's wire format: ``{"ok":true,"result":...}``
on success, ``{"ok":false,"error_code":N,"description":"...","parameters":{...}}`` with the
same HTTP status on failure. References: docs/reference protocols.md section B, and
python-telegram-bot 22.8 / aiogram 3.31 (which copy the official texts).

Bots
    One double serves several bots, one per token (``bots``: token -> username; the bot's
    id is the number before the colon, as in real tokens). An unknown token gets 401
    ``Unauthorized``, an unknown method 404 ``Not Found``. Method names are matched without
    case, as Telegram does. Parameters are read from the query string and from a JSON,
    urlencoded or multipart body (python-telegram-bot sends forms whose object values are
    JSON strings); every request is recorded in ``calls``, refused ones included.

Methods
    ``getMe``; ``sendMessage`` (text of 1-4096 UTF-16 units, ``reply_parameters`` or the old
    ``reply_to_message_id``, ``message_thread_id``; message ids increase per chat, after any
    message the chat already had); ``editMessageText`` (only the bot's own messages; the
    exact "message is not modified" error for identical text); ``sendChatAction``;
    ``setWebhook`` / ``deleteWebhook`` / ``getWebhookInfo`` (state kept per bot;
    ``drop_pending_updates`` honoured); ``getUpdates`` (offset confirmation: every update
    below the offset is forgotten; a negative offset keeps the last ones; ``limit``;
    long polling up to ``timeout`` seconds, woken by :meth:`TelegramDouble.enqueue`; 409
    while a webhook is set, and for the older of two concurrent calls, as Telegram does).

Chats
    ``messages(chat_id)`` is what the user sees from the bot, after edits. ``migrate_chat``
    makes a group answer 400 with ``migrate_to_chat_id``; ``block_chat`` makes it answer 403
    "bot was blocked by the user".

Faults (``inject(name, count=n, method=None, token=None, after=0, **params)``), each used by
the next n requests that fit, after letting ``after`` of them through: ``429``
(retry_after=5), ``500``, ``502`` (an nginx HTML page, as Telegram's front ends send, not
the JSON envelope), ``403`` (description), ``409`` (description; default: another
getUpdates), ``400`` (description), ``migrate`` (migrate_to_chat_id), ``drop`` (close the
connection without an answer).

Simplifications: text is stored as sent (Telegram trims leading and trailing whitespace);
``allowed_updates`` is recorded but does not filter; MarkdownV2 is only checked for the
characters that must always be escaped (``. ! - # + = | { }``); error texts for malformed
requests are close to Telegram's, not guaranteed identical.

Command line: ``python -m tests.doubles.telegram_server --port 8081 --token 123:ABC...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from tests.doubles.serving import ThreadedDouble

DEFAULT_TOKEN = "5555555555:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
DEFAULT_USERNAME = "studio_helper_bot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT_UNITS = 4096
FAULTS = frozenset({"429", "500", "502", "403", "409", "400", "migrate", "drop"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
_BAD_GATEWAY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    "Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)
_MARKDOWN_V2_RESERVED = re.compile(r"(?<!\\)[.!\-#+=|{}]")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Call:
    """One request as the double received it."""

    token: str
    method: str  # as written in the URL
    params: dict[str, Any]
    http_method: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


@dataclass
class SentText:
    """A message in a chat, as the user sees it now."""

    message_id: int
    text: str
    from_bot: bool
    thread_id: int | None = None
    reply_to: int | None = None
    edits: int = 0


@dataclass
class _Fault:
    name: str
    remaining: int
    method: str | None
    token: str | None
    params: dict[str, Any]
    after: int = 0  # fitting requests to let through first

    def fits(self, token: str, method: str) -> bool:
        return (self.method is None or self.method.lower() == method.lower()) and (
            self.token is None or self.token == token
        )


@dataclass
class _Bot:
    token: str
    username: str
    first_name: str
    webhook_url: str = ""
    webhook_secret: str = ""
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    pending: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 100_000_001
    chats: dict[int, dict[int, SentText]] = field(default_factory=dict)
    chat_info: dict[int, dict[str, Any]] = field(default_factory=dict)
    migrated: dict[int, int] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    actions: list[tuple[int, str]] = field(default_factory=list)
    poll_generation: int = 0
    changed: asyncio.Event | None = None

    @property
    def id(self) -> int:
        return int(self.token.split(":", 1)[0])

    def user(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }


_Handler = Callable[[_Bot, dict[str, Any]], Awaitable[web.Response]]


class _AnswerNowError(Exception):
    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


class _DroppedError(Exception):
    pass


def _fail(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.Response(text=_dumps(body), status=code, content_type="application/json")


def _refuse(code: int, description: str, parameters: dict[str, Any] | None = None) -> NoReturn:
    raise _AnswerNowError(_fail(code, description, parameters))


def _bad(description: str) -> NoReturn:
    _refuse(400, f"Bad Request: {description}")


def _ok(result: Any, description: str | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return web.Response(text=_dumps(body), content_type="application/json")


def _form_value(value: str) -> Any:
    """Form fields carry objects and lists as JSON strings (python-telegram-bot does so)."""
    if value[:1] in "{[":
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return {"true": True, "false": False}.get(value, value)


def _int(params: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        _bad(f"wrong parameter {name} in request")
    try:
        return int(value)
    except (TypeError, ValueError):
        _bad(f"wrong parameter {name} in request")


def _object(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            _bad(f"can't parse {name} JSON object")
    if value is None:
        return None
    if not isinstance(value, dict):
        _bad(f"can't parse {name} JSON object")
    return value


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() == "true")


class TelegramDouble(ThreadedDouble):
    """The Bot API on a loopback port, served from a thread; ``url`` is the API base URL."""

    label = "Telegram"

    def __init__(
        self,
        bots: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.calls: list[Call] = []
        self._bots: dict[str, _Bot] = {}
        for token, username in (bots or {DEFAULT_TOKEN: DEFAULT_USERNAME}).items():
            self.add_bot(token, username)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    # -- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        """The first bot's token."""
        return next(iter(self._bots))

    def add_bot(self, token: str, username: str, first_name: str = "Studio Helper") -> None:
        if not re.match(r"^[0-9]+:[A-Za-z0-9_-]+$", token):
            raise ValueError("a bot token is <bot id>:<key>")
        self._bots[token] = _Bot(token=token, username=username, first_name=first_name)

    def bot_user(self, token: str | None = None) -> dict[str, Any]:
        """The bot's User object (what getMe answers)."""
        return self._bot(token).user()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        return app

    async def on_loop_start(self) -> None:
        for bot in self._bots.values():
            bot.changed = asyncio.Event()

    def inject(
        self,
        fault: str,
        *,
        count: int = 1,
        method: str | None = None,
        token: str | None = None,
        after: int = 0,
        **params: Any,
    ) -> None:
        """Make the next ``count`` requests (to ``method`` / of ``token``, if given) fail,
        once ``after`` such requests have passed."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if fault == "migrate" and "migrate_to_chat_id" not in params:
            raise ValueError("the migrate fault needs migrate_to_chat_id")
        with self._lock:
            self._faults.append(_Fault(fault, count, method, token, dict(params), after))

    def calls_to(self, method: str, token: str | None = None) -> list[Call]:
        with self._lock:
            return [
                call
                for call in self.calls
                if call.method.lower() == method.lower() and (token is None or call.token == token)
            ]

    def chat(self, chat_id: int | str, token: str | None = None) -> list[SentText]:
        """Every message of the chat that the double knows (the user's and the bot's)."""
        with self._lock:
            return list(self._bot(token).chats.get(int(chat_id), {}).values())

    def messages(self, chat_id: int | str, token: str | None = None) -> list[str]:
        """The bot's messages in the chat, in order, as the user sees them (after edits)."""
        return [sent.text for sent in self.chat(chat_id, token) if sent.from_bot]

    def actions(self, token: str | None = None) -> list[tuple[int, str]]:
        """(chat id, action) of every sendChatAction that succeeded."""
        with self._lock:
            return list(self._bot(token).actions)

    def webhook(self, token: str | None = None) -> dict[str, Any]:
        """The webhook state: url, secret, allowed_updates."""
        with self._lock:
            bot = self._bot(token)
            return {
                "url": bot.webhook_url,
                "secret_token": bot.webhook_secret,
                "allowed_updates": bot.allowed_updates,
            }

    def pending(self, token: str | None = None) -> list[int]:
        """update_ids not yet confirmed by a getUpdates offset."""
        with self._lock:
            return [update["update_id"] for update in self._bot(token).pending]

    def enqueue(self, update: Mapping[str, Any], token: str | None = None) -> int:
        """Queue an update for getUpdates (an ``update_id`` is given if it has none) and
        note the user's message, so that replies to it are valid. Answers the update_id."""
        bot = self._bot(token)
        with self._lock:
            queued = dict(update)
            if not isinstance(queued.get("update_id"), int):
                queued["update_id"] = bot.next_update_id
            bot.next_update_id = max(bot.next_update_id, queued["update_id"] + 1)
            bot.pending.append(queued)
            bot.pending.sort(key=lambda item: int(item["update_id"]))
            self._note_incoming(bot, queued)
        self._wake(bot)
        return int(queued["update_id"])

    def migrate_chat(self, old_chat_id: int, new_chat_id: int, token: str | None = None) -> None:
        with self._lock:
            self._bot(token).migrated[int(old_chat_id)] = int(new_chat_id)

    def block_chat(self, chat_id: int, token: str | None = None) -> None:
        with self._lock:
            self._bot(token).blocked.add(int(chat_id))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    @staticmethod
    def webhook_request(
        update: Mapping[str, Any], secret: str | None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Telegram POSTs to a webhook for ``update``."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        return _dumps(dict(update)).encode(), headers

    @staticmethod
    def post_update(
        url: str, update: Mapping[str, Any], *, secret: str | None, timeout_s: float = 10.0
    ) -> httpx.Response:
        """POST ``update`` to a webhook ``url`` as Telegram does, secret header included."""
        body, headers = TelegramDouble.webhook_request(update, secret)
        return httpx.post(url, content=body, headers=headers, timeout=timeout_s)

    def deliver(self, update: Mapping[str, Any], token: str | None = None) -> httpx.Response:
        """POST ``update`` to the webhook set for the bot, with the secret it was set with."""
        state = self.webhook(token)
        if not state["url"]:
            raise RuntimeError("no webhook is set for this bot")
        return self.post_update(state["url"], update, secret=state["secret_token"] or None)

    # -- serving ---------------------------------------------------------------------------

    def _bot(self, token: str | None) -> _Bot:
        return self._bots[token or self.token]

    def _wake(self, bot: _Bot) -> None:
        """Wake long polls of ``bot`` (from any thread): something changed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            old, bot.changed = bot.changed, asyncio.Event()
            if old is not None:
                old.set()

        if threading.current_thread() is self._thread:
            wake()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        token, method = request.match_info["token"], request.match_info["method"]
        try:
            params = await self._params(request)
            with self._lock:
                headers = {name.lower(): value for name, value in request.headers.items()}
                self.calls.append(
                    Call(token, method, params, request.method, request.content_type, headers)
                )
            bot = self._bots.get(token)
            if bot is None:
                _refuse(401, "Unauthorized")
            handler = self._methods().get(method.lower())
            if handler is None:
                _refuse(404, "Not Found")
            self._apply_fault(request, token, method)
            return await handler(bot, params)
        except _AnswerNowError as early:
            return early.response
        except (_DroppedError, ConnectionResetError):
            return web.Response(status=499)

    def _methods(self) -> dict[str, _Handler]:
        return {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "sendchataction": self._send_chat_action,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates,
        }

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {key: _form_value(value) for key, value in request.query.items()}
        if not request.body_exists:
            return params
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                _bad("can't parse JSON object")
            if not isinstance(body, dict):
                _bad("can't parse JSON object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update(
                {key: _form_value(value) for key, value in form.items() if isinstance(value, str)}
            )
        return params

    def _apply_fault(self, request: web.Request, token: str, method: str) -> None:
        with self._lock:
            fault = next((f for f in self._faults if f.fits(token, method)), None)
            if fault is None:
                return
            if fault.after > 0:
                fault.after -= 1
                return
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
        params = fault.params
        if fault.name == "429":
            retry_after = int(params.get("retry_after", 5))
            _refuse(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        if fault.name == "500":
            _refuse(500, str(params.get("description", "Internal Server Error")))
        if fault.name == "502":
            raise _AnswerNowError(
                web.Response(text=_BAD_GATEWAY, status=502, content_type="text/html")
            )
        if fault.name == "403":
            _refuse(403, str(params.get("description", "Forbidden: bot was blocked by the user")))
        if fault.name == "409":
            _refuse(409, str(params.get("description", POLL_CONFLICT)))
        if fault.name == "400":
            _refuse(400, str(params.get("description", "Bad Request: injected fault")))
        if fault.name == "migrate":
            _refuse(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": int(params["migrate_to_chat_id"])},
            )
        transport = request.transport
        if transport is not None:
            transport.close()
        raise _DroppedError

    # -- chats -----------------------------------------------------------------------------

    def _chat_id(self, bot: _Bot, params: Mapping[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            _bad("chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            _bad("chat not found")
        chat_id = _int(params, "chat_id")
        assert chat_id is not None
        with self._lock:
            moved = bot.migrated.get(chat_id)
            blocked = chat_id in bot.blocked
        if moved is not None:
            _refuse(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": moved},
            )
        if blocked:
            if chat_id > 0:
                _refuse(403, "Forbidden: bot was blocked by the user")
            _refuse(403, "Forbidden: bot was kicked from the supergroup chat")
        return chat_id

    def _chat_object(self, bot: _Bot, chat_id: int) -> dict[str, Any]:
        known = bot.chat_info.get(chat_id)
        if known is not None:
            return known
        if chat_id > 0:
            return {"id": chat_id, "first_name": "User", "type": "private"}
        return {"id": chat_id, "title": "Group", "type": "supergroup"}

    def _note_incoming(self, bot: _Bot, update: Mapping[str, Any]) -> None:
        for kind in ("message", "edited_message", "channel_post", "edited_channel_post"):
            message = update.get(kind)
            if not isinstance(message, dict):
                continue
            chat = message.get("chat")
            if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
                continue
            bot.chat_info[chat["id"]] = dict(chat)
            message_id = message.get("message_id")
            if isinstance(message_id, int):
                bot.chats.setdefault(chat["id"], {})[message_id] = SentText(
                    message_id=message_id,
                    text=str(message.get("text") or message.get("caption") or ""),
                    from_bot=bool((message.get("from") or {}).get("is_bot")),
                )

    def _message_json(self, bot: _Bot, chat_id: int, sent: SentText) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "from": bot.user(),
            "chat": self._chat_object(bot, chat_id),
            "date": int(time.time()),
        }
        if sent.thread_id is not None:
            message["message_thread_id"] = sent.thread_id
            message["is_topic_message"] = True
        if sent.reply_to is not None:
            replied = bot.chats.get(chat_id, {}).get(sent.reply_to)
            if replied is not None:
                message["reply_to_message"] = {
                    "message_id": replied.message_id,
                    "chat": self._chat_object(bot, chat_id),
                    "date": int(time.time()),
                    "text": replied.text,
                }
        message["text"] = sent.text
        return message

    def _check_text(self, params: Mapping[str, Any], too_long: str) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            _bad("message text is empty")
        if utf16_units(text) > MAX_TEXT_UNITS:
            _bad(too_long)
        if params.get("parse_mode") == "MarkdownV2":
            reserved = _MARKDOWN_V2_RESERVED.search(text)
            if reserved is not None:
                _bad(
                    f"can't parse entities: Character '{reserved.group()}' is reserved and "
                    "must be escaped with the preceding '\\'"
                )
        return text

    # -- methods ---------------------------------------------------------------------------

    async def _get_me(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        return _ok(
            {
                **bot.user(),
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
                "can_connect_to_business": False,
                "has_main_web_app": False,
            }
        )

    async def _send_message(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        chat_id = self._chat_id(bot, params)
        text = self._check_text(params, "message is too long")
        thread_id = _int(params, "message_thread_id")
        reply = _object(params, "reply_parameters") or {}
        reply_to = _int(reply, "message_id", _int(params, "reply_to_message_id"))
        allow_missing = _flag(reply, "allow_sending_without_reply") or _flag(
            params, "allow_sending_without_reply"
        )
        with self._lock:
            chat = bot.chats.setdefault(chat_id, {})
            if reply_to is not None and reply_to not in chat:
                if not allow_missing:
                    _bad("message to be replied not found")
                reply_to = None
            message_id = max(chat, default=0) + 1
            sent = SentText(message_id, text, True, thread_id, reply_to)
            chat[message_id] = sent
            result = self._message_json(bot, chat_id, sent)
        return _ok(result)

    async def _edit_message_text(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        if params.get("inline_message_id"):
            _bad("message to edit not found")
        chat_id = self._chat_id(bot, params)
        message_id = _int(params, "message_id")
        if message_id is None:
            _bad("message identifier is not specified")
        text = self._check_text(params, "MESSAGE_TOO_LONG")
        with self._lock:
            sent = bot.chats.get(chat_id, {}).get(message_id)
            if sent is None:
                _bad("message to edit not found")
            if not sent.from_bot:
                _bad("message can't be edited")
            if sent.text == text:
                _refuse(400, NOT_MODIFIED)
            sent.text = text
            sent.edits += 1
            result = self._message_json(bot, chat_id, sent)
        result["edit_date"] = int(time.time())
        return _ok(result)

    async def _send_chat_action(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        chat_id = self._chat_id(bot, params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            _bad("wrong parameter action in request")
        with self._lock:
            bot.actions.append((chat_id, str(action)))
        return _ok(True)

    async def _set_webhook(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        url = params.get("url")
        if not isinstance(url, str):
            _bad("bad webhook: Failed to resolve host: Name or service not known")
        if not url:
            return await self._delete_webhook(bot, params)
        parts = urlsplit(url)
        if parts.scheme != "https":
            _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in _WEBHOOK_PORTS:
            _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token") or ""
        if secret and not _SECRET.match(str(secret)):
            _bad("bad webhook: Secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = _form_value(allowed)
        with self._lock:
            same = bot.webhook_url == url
            bot.webhook_url = url
            bot.webhook_secret = str(secret)
            if allowed is not None:
                bot.allowed_updates = list(allowed)
            bot.max_connections = _int(params, "max_connections", 40) or 40
            if _flag(params, "drop_pending_updates"):
                bot.pending.clear()
        self._wake(bot)
        return _ok(True, "Webhook is already set" if same else "Webhook was set")

    async def _delete_webhook(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        with self._lock:
            had = bool(bot.webhook_url)
            bot.webhook_url = bot.webhook_secret = ""
            if _flag(params, "drop_pending_updates"):
                bot.pending.clear()
        self._wake(bot)
        return _ok(True, "Webhook was deleted" if had else "Webhook is already deleted")

    async def _get_webhook_info(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        with self._lock:
            info: dict[str, Any] = {
                "url": bot.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(bot.pending),
            }
            if bot.webhook_url:
                info["max_connections"] = bot.max_connections
                info["ip_address"] = "127.0.0.1"
            if bot.allowed_updates is not None:
                info["allowed_updates"] = list(bot.allowed_updates)
        return _ok(info)

    async def _get_updates(self, bot: _Bot, params: dict[str, Any]) -> web.Response:
        offset = _int(params, "offset")
        limit = max(1, min(100, _int(params, "limit", 100) or 100))
        timeout = max(0, _int(params, "timeout", 0) or 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(kind) for kind in allowed]
        # Telegram ends an older getUpdates when a newer one arrives for the same bot.
        bot.poll_generation += 1
        generation = bot.poll_generation
        self._wake(bot)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if bot.webhook_url:
                _refuse(409, WEBHOOK_CONFLICT)
            if generation != bot.poll_generation:
                _refuse(409, POLL_CONFLICT)
            with self._lock:
                self._confirm(bot, offset)
                batch = [dict(update) for update in bot.pending[:limit]]
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                return _ok(batch)
            if bot.changed is None:  # a bot added after start()
                bot.changed = asyncio.Event()
            changed = bot.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=remaining)

    @staticmethod
    def _confirm(bot: _Bot, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            bot.pending = bot.pending[offset:]
            return
        bot.pending = [update for update in bot.pending if update["update_id"] >= offset]


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.telegram_server",
        description="Serve a protocol double of the Telegram Bot API (not Telegram).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    args = parser.parse_args(argv)
    double = TelegramDouble({args.token: args.username}, host=args.host, port=args.port)
    with double:
        sys.stdout.write(f"Telegram Bot API double (not Telegram) serving {double.url}\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
