"""Feishu event payloads (event subscription schema 2.0) and what each event asks of us.

Pydantic models cover the envelope and ``im.message.receive_v1``; :data:`EVENT_HANDLERS`
maps an event type to the function turning it into :class:`InboundItem` values, and
:data:`IGNORED_EVENTS` lists the types we acknowledge and drop on purpose. Any other type
becomes an ``ignored`` item too: an exception would make Feishu redeliver the event four
times over seven hours.

The models ignore unknown fields: Feishu adds fields to events over time (``user_agent``,
``lark_agent_context``...), and a new field must not turn a message into an error.
Reference: /work/shared/reference/protocols.md, section A.5.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from connectors.base import ConnectorSettings, InboundItem, ReplyTarget
from workflows.nodes.message_trigger import ChatMessage

# ChatMessage.text holds at most this many characters.
MAX_TEXT_CHARS = 20_000

COMMANDS: dict[str, str] = {"/reset": "reset", "/help": "help", "/start": "start"}


def _as_text(value: Any) -> Any:
    # Timestamps are strings of epoch milliseconds on the wire while the SDK models declare
    # them int, and optional ids come as null: accept both as text.
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _as_list(value: Any) -> Any:
    return [] if value is None else value


def _as_dict(value: Any) -> Any:
    return {} if value is None else value


Text = Annotated[str, BeforeValidator(_as_text)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EventHeader(_Model):
    event_id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    create_time: Text = ""
    token: Text = ""
    app_id: Text = ""
    tenant_key: Text = ""


class Envelope(_Model):
    """Every schema 2.0 event: ``{"schema": "2.0", "header": {...}, "event": {...}}``."""

    schema_version: str = Field(alias="schema")
    header: EventHeader
    event: Annotated[dict[str, Any], BeforeValidator(_as_dict)] = Field(default_factory=dict)


class UserIds(_Model):
    open_id: Text = ""
    union_id: Text = ""
    # Only present with the contact:user.employee_id:readonly scope.
    user_id: Text = ""


class Sender(_Model):
    sender_id: UserIds = Field(default_factory=UserIds)
    sender_type: Text = ""
    tenant_key: Text = ""


class Mention(_Model):
    key: Text = ""  # the placeholder in the text: @_user_1, @_user_2...
    id: UserIds = Field(default_factory=UserIds)
    name: Text = ""
    tenant_key: Text = ""


class Message(_Model):
    message_id: str = Field(min_length=1)
    root_id: Text = ""
    parent_id: Text = ""
    create_time: Text = ""
    update_time: Text = ""
    chat_id: str = Field(min_length=1)
    thread_id: Text = ""
    chat_type: Text = ""  # p2p or group
    message_type: Text = ""
    content: Text = ""  # a JSON document in a string: parsed a second time
    mentions: Annotated[list[Mention], BeforeValidator(_as_list)] = Field(default_factory=list)
    user_agent: Text = ""


class MessageReceived(_Model):
    """The ``event`` of ``im.message.receive_v1``."""

    sender: Sender
    message: Message


# --- message content -------------------------------------------------------------------------


class _UnreadableError(Exception):
    """A message whose content we cannot use; the text says why (the item's reason)."""


Attachment = dict[str, Any]
ContentReader = Callable[[dict[str, Any], str], tuple[str, list[Attachment]]]


def _required(content: dict[str, Any], key: str, message_type: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value:
        raise _UnreadableError(f"{message_type} message without {key}")
    return value


def _optional(content: dict[str, Any], key: str) -> Any:
    value = content.get(key)
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _read_text(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    text = content.get("text")
    if not isinstance(text, str):
        raise _UnreadableError("text message without text")
    return text, []


def _read_image(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    key = _required(content, "image_key", "image")
    return "", [{"message_type": "image", "message_id": message_id, "image_key": key}]


def _read_file(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    key = _required(content, "file_key", "file")
    name = content.get("file_name")
    name = name if isinstance(name, str) else ""
    attachment = {"message_type": "file", "message_id": message_id, "file_key": key}
    attachment["file_name"] = name
    return name, [attachment]


def _read_audio(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    key = _required(content, "file_key", "audio")
    attachment: Attachment = {"message_type": "audio", "message_id": message_id, "file_key": key}
    if _optional(content, "duration") is not None:
        attachment["duration"] = content["duration"]  # milliseconds
    return "", [attachment]


def _read_media(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    key = _required(content, "file_key", "media")
    attachment: Attachment = {"message_type": "media", "message_id": message_id, "file_key": key}
    for extra in ("image_key", "file_name", "duration"):  # image_key: the video's cover
        if _optional(content, extra) is not None:
            attachment[extra] = content[extra]
    name = attachment.get("file_name", "")
    return str(name), [attachment]


def _read_post(content: dict[str, Any], message_id: str) -> tuple[str, list[Attachment]]:
    document = post_document(content)
    if not document:
        raise _UnreadableError("post message without title or content")
    return post_text(document, message_id)


CONTENT_READERS: dict[str, ContentReader] = {
    "text": _read_text,
    "post": _read_post,
    "image": _read_image,
    "file": _read_file,
    "audio": _read_audio,
    "media": _read_media,
}

# Post documents may come wrapped in a locale (the send API's shape); the first found wins.
_LOCALES = ("zh_cn", "en_us", "ja_jp")


def post_document(content: dict[str, Any]) -> dict[str, Any]:
    """The post itself, ``{"title": ..., "content": [[element...]...]}``.

    Events carry it bare; the send API and some older pushes wrap it in a locale
    (``{"zh_cn": {...}}``), custom bots in ``{"post": {"zh_cn": {...}}}``.
    """
    inner = content.get("post")
    if isinstance(inner, dict) and "content" not in content:
        content = inner
    if isinstance(content.get("content"), list) or isinstance(content.get("title"), str):
        return content
    for locale in (*_LOCALES, *content):
        document = content.get(locale)
        if isinstance(document, dict) and isinstance(document.get("content"), list):
            return document
    return {}


def _post_words(element: dict[str, Any]) -> str | None:
    """The words of one post element; None for an element without words (images...)."""
    tag = element.get("tag")
    text = element.get("text")
    if tag in ("text", "code_block", "md"):
        return text if isinstance(text, str) else ""
    if tag == "a":
        return text if isinstance(text, str) and text else str(element.get("href") or "")
    if tag != "at":
        return None  # img, media, emotion, hr and tags to come
    # In events the at element's user_id is the mention's placeholder (@_user_1), resolved
    # with the message's mentions as in a text message; "all" is @all.
    user_id = str(element.get("user_id") or "")
    if user_id in ("all", "@_all"):
        return "@_all"
    if user_id.startswith("@_user_"):
        return user_id
    return "@" + str(element.get("user_name") or user_id)


def _post_attachment(element: dict[str, Any], message_id: str) -> Attachment | None:
    tag = element.get("tag")
    if tag == "img" and isinstance(element.get("image_key"), str):
        return {
            "message_type": "image",
            "message_id": message_id,
            "image_key": element["image_key"],
        }
    if tag == "media" and isinstance(element.get("file_key"), str):
        attachment = {"message_type": "media", "message_id": message_id}
        attachment["file_key"] = element["file_key"]
        if isinstance(element.get("image_key"), str):
            attachment["image_key"] = element["image_key"]  # the video's cover
        return attachment
    return None


def post_text(document: dict[str, Any], message_id: str = "") -> tuple[str, list[Attachment]]:
    """Title, then one line per paragraph (the words of its text, link and @ elements), and
    the images and videos it holds."""
    lines: list[str] = []
    attachments: list[Attachment] = []
    title = document.get("title")
    if isinstance(title, str) and title.strip():
        lines.append(title)
    for paragraph in document.get("content") or []:
        if not isinstance(paragraph, list):
            continue
        words: list[str] = []
        for element in paragraph:
            if not isinstance(element, dict):
                continue
            text = _post_words(element)
            if text is not None:
                words.append(text)
            attachment = _post_attachment(element, message_id)
            if attachment is not None:
                attachments.append(attachment)
        if words or not paragraph:  # an image-only paragraph is no line; an empty one is
            lines.append("".join(words))
    return "\n".join(lines), attachments


# --- mentions ----------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"@_user_\d+|@_all(?![A-Za-z0-9_])")
_REMOVED = "\x00"
_REMOVED_RUN = re.compile(r"[ \t]*\x00(?:[ \t]*\x00)*[ \t]*")


def resolve_mentions(text: str, mentions: list[Mention], bot_open_id: str) -> tuple[str, bool]:
    """(text, whether the bot is mentioned).

    The bot is mentioned only when a mention's ``id.open_id`` is the bot's own open_id:
    display names are not unique (anyone can be called like the bot) and @all is no
    mention of the bot. The bot's placeholders are removed with the blanks around them,
    other users' become "@Name", and ``@_all`` becomes "@all".
    """
    by_key = {mention.key: mention for mention in mentions if mention.key}
    mentioned = bool(bot_open_id) and any(m.id.open_id == bot_open_id for m in mentions)

    def replace(match: re.Match[str]) -> str:
        key = match.group(0)
        if key == "@_all":
            return "@all"
        mention = by_key.get(key)
        if mention is None:
            return key
        if bot_open_id and mention.id.open_id == bot_open_id:
            return _REMOVED
        return f"@{mention.name}" if mention.name else key

    def close_gap(match: re.Match[str]) -> str:
        at_line_start = match.start() == 0 or match.string[match.start() - 1] == "\n"
        at_line_end = match.end() == len(match.string) or match.string[match.end()] == "\n"
        return "" if at_line_start or at_line_end else " "

    resolved = _PLACEHOLDER.sub(replace, text.replace(_REMOVED, ""))
    return _REMOVED_RUN.sub(close_gap, resolved).strip(), mentioned


# --- items -------------------------------------------------------------------------------------

Handler = Callable[[ConnectorSettings, Envelope], list[InboundItem]]


def _ignored(dedupe_key: str, reason: str, header: EventHeader | None = None) -> InboundItem:
    return InboundItem(
        dedupe_key=dedupe_key,
        kind="ignored",
        event_id=header.event_id if header else "",
        event_type=header.event_type if header else "",
        reason=reason,
    )


def payload_key(payload: dict[str, Any]) -> str:
    """A dedupe key for a payload without a usable id: a digest of its content."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return "payload:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "event"
    return f"{where}: {error['msg']}"


def _read(event: MessageReceived) -> tuple[str, list[Attachment]]:
    """The words (mention placeholders still in) and attachments of a message we answer."""
    message, sender = event.message, event.sender
    if sender.sender_type != "user":
        raise _UnreadableError(
            f"messages from a {sender.sender_type or 'non-user'} sender are not answered"
        )
    if not sender.sender_id.open_id:
        raise _UnreadableError("the sender has no open_id")
    reader = CONTENT_READERS.get(message.message_type)
    if reader is None:
        raise _UnreadableError(f"{message.message_type or 'untyped'} messages are not handled")
    try:
        content = json.loads(message.content)
    except ValueError:
        raise _UnreadableError("the message content is not JSON") from None
    if not isinstance(content, dict):
        raise _UnreadableError("the message content is not a JSON object")
    return reader(content, message.message_id)


def message_received(settings: ConnectorSettings, envelope: Envelope) -> list[InboundItem]:
    """``im.message.receive_v1``: one message, offered to the workflow (or a command)."""
    header = envelope.header
    try:
        event = MessageReceived.model_validate(envelope.event)
    except ValidationError as exc:
        reason = f"malformed im.message.receive_v1 event ({_first_error(exc)})"
        return [_ignored(f"event:{header.event_id}", reason, header)]
    message, sender = event.message, event.sender
    # Feishu redelivers a message under new event ids: the message id is what is unique.
    dedupe_key = f"message:{message.message_id}"
    try:
        raw_text, attachments = _read(event)
    except _UnreadableError as exc:
        return [_ignored(dedupe_key, str(exc), header)]

    config = settings.config
    text, mentioned = resolve_mentions(raw_text, message.mentions, config.bot_open_id)
    chat_type = "private" if message.chat_type == "p2p" else "group"
    extra: dict[str, Any] = {"event_id": header.event_id, "chat_id": message.chat_id}
    extra["message_type"] = message.message_type
    for name in ("root_id", "parent_id", "thread_id"):
        if getattr(message, name):
            extra[name] = getattr(message, name)
    if attachments:
        extra["attachments"] = attachments
    chat_message = ChatMessage(
        text=text[:MAX_TEXT_CHARS],
        chat_type=chat_type,
        mentioned=mentioned,
        channel=f"connector:{settings.connector_id}",
        chat_id=message.chat_id,
        # In groups too: conversations are kept per (chat, end user).
        user_id=sender.sender_id.open_id,
        message_id=message.message_id,
        payload=extra,
    )
    # A command in a group must address the bot, as everything the bot answers there.
    command = COMMANDS.get(text) if chat_type == "private" or mentioned else None
    return [
        InboundItem(
            dedupe_key=dedupe_key,
            kind="command" if command else "message",
            event_id=header.event_id,
            event_type=header.event_type,
            message=chat_message,
            target=ReplyTarget(message.chat_id, message.message_id, message.thread_id),
            command=command or "",
            attachments=attachments,
        )
    ]


EVENT_HANDLERS: dict[str, Handler] = {
    "im.message.receive_v1": message_received,
}

# Acknowledged and dropped on purpose (subscribing to them is harmless).
IGNORED_EVENTS: dict[str, str] = {
    "im.message.message_read_v1": "read receipts need no answer",
    "im.message.recalled_v1": "a recalled message needs no answer",
    "im.message.reaction.created_v1": "reactions are not answered",
    "im.message.reaction.deleted_v1": "reactions are not answered",
    "im.chat.member.bot.added_v1": "the bot was added to a group; it answers when @-mentioned",
    "im.chat.member.bot.deleted_v1": "the bot was removed from a group",
    "im.chat.member.user.added_v1": "group membership changes are not answered",
    "im.chat.member.user.deleted_v1": "group membership changes are not answered",
    "im.chat.member.user.withdrawn_v1": "group membership changes are not answered",
    "im.chat.updated_v1": "group setting changes are not answered",
    "im.chat.disbanded_v1": "a disbanded group needs no answer",
    "im.chat.access_event.bot_p2p_chat_entered_v1": "opening the chat with the bot is no message",
    "application.bot.menu_v6": "bot menu clicks are not handled",
}


def items_for(settings: ConnectorSettings, payload: dict[str, Any]) -> list[InboundItem]:
    """What a verified payload asks for; never raises on a well-formed JSON object."""
    if payload.get("type") == "url_verification":
        # verify() answers the challenge itself; nothing is left to do.
        return [_ignored(payload_key(payload), "URL verification is answered at once")]
    if "schema" not in payload:
        event = payload.get("event")
        event_type = event.get("type") if isinstance(event, dict) else payload.get("type")
        uuid = payload.get("uuid")
        key = f"event:{uuid}" if isinstance(uuid, str) and uuid else payload_key(payload)
        reason = (
            f"schema 1.0 event ({event_type or 'untyped'}) is not handled: subscribe to the "
            "2.0 events in the developer console"
        )
        return [_ignored(key, reason)]
    try:
        envelope = Envelope.model_validate(payload)
    except ValidationError as exc:
        return [_ignored(payload_key(payload), f"malformed event envelope ({_first_error(exc)})")]
    event_type = envelope.header.event_type
    handler = EVENT_HANDLERS.get(event_type)
    if handler is not None:
        return handler(settings, envelope)
    reason = IGNORED_EVENTS.get(event_type, f"event type {event_type} is not handled")
    return [_ignored(f"event:{envelope.header.event_id}", reason, envelope.header)]
