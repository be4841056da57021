"""What Telegram sends and answers, parsed: updates into :class:`InboundItem` values, Bot API
answers into pydantic models.

Updates are parsed with python-telegram-bot's own classes (``Update.de_json``), which follow
the Bot API release by release and slice entities by UTF-16 offsets
(``Message.parse_entities``). Only the parsing layer of that library is used: calls go
through ``assistant_site.http`` (see ``api.py``).

Which update does what (``UPDATE_HANDLERS`` and ``IGNORED_UPDATES``):

- ``message`` in a private chat, group or supergroup: a ``message`` item for the workflow,
  or a ``command`` item for ``/start``, ``/help`` and ``/reset``;
- ``edited_message``: ignored. The first version was already answered; answering the edit
  would start a second run and post a second answer under the first;
- ``my_chat_member``: ignored, the reason saying how the bot's membership changed;
- ``channel_post`` and the rest: ignored with a reason. Unknown update types (the Bot API
  adds some every few releases) are ignored too, never an error, so that Telegram stops
  redelivering them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from telegram import Animation, Audio, Document, Message, MessageEntity, Update, Video, Voice
from telegram.constants import ChatType, MessageEntityType, UpdateType

from connectors.base import InboundItem, ReplyTarget
from connectors.telegram.text import utf16_index, utf16_len
from workflows.nodes.message_trigger import ChatMessage

# Commands the connector answers itself; every other command goes to the workflow as a
# message (the message trigger's command prefix picks the ones it wants).
CONNECTOR_COMMANDS = frozenset({"start", "help", "reset"})

IGNORED_UPDATES: dict[str, str] = {
    UpdateType.EDITED_MESSAGE: (
        "an edited message does not start a second run: its first version was already answered"
    ),
    UpdateType.CHANNEL_POST: "channel posts are not answered (only private chats and groups)",
    UpdateType.EDITED_CHANNEL_POST: "edited channel posts are not answered",
    UpdateType.CHAT_MEMBER: "a member's status in a chat changed",
    UpdateType.CHAT_JOIN_REQUEST: "join requests are not handled",
    UpdateType.CALLBACK_QUERY: "the connector sends no inline buttons, so it ignores callbacks",
    UpdateType.INLINE_QUERY: "inline mode is not supported",
    UpdateType.CHOSEN_INLINE_RESULT: "inline mode is not supported",
    UpdateType.MESSAGE_REACTION: "reactions are not handled",
    UpdateType.MESSAGE_REACTION_COUNT: "reactions are not handled",
    UpdateType.BUSINESS_MESSAGE: "business accounts are not supported",
    UpdateType.EDITED_BUSINESS_MESSAGE: "business accounts are not supported",
}

# Punctuation that people type right after an @mention ("@bot, what is..."): removed with it.
_AFTER_MENTION = ",:;，：；"
_HORIZONTAL_SPACE = " \t\u00a0"
# What follows a word without a space ("ask @bot?" -> "ask?").
_CLOSING = "?!.)]}…»\u201d\u2019。！？、"  # the last two: closing curly quotes

_Media = Animation | Audio | Document | Video | Voice
AttachmentKind = Literal[
    "photo", "document", "voice", "video", "sticker", "audio", "animation", "video_note"
]


class Attachment(BaseModel):
    """A file that came with a message; download it with getFile and ``file_id``."""

    model_config = ConfigDict(extra="forbid")

    kind: AttachmentKind
    file_id: str
    file_unique_id: str  # the same file across bots and time; file_id is per bot
    file_name: str = ""
    mime_type: str = ""
    file_size: int | None = None


class ResponseParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    retry_after: float | None = None
    migrate_to_chat_id: int | None = None


class ApiResponse(BaseModel):
    """The envelope of every Bot API answer: ``{"ok": true, "result": ...}`` or
    ``{"ok": false, "error_code", "description", "parameters"}``."""

    model_config = ConfigDict(extra="ignore")

    ok: bool
    result: Any = None
    error_code: int | None = None
    description: str = ""
    parameters: ResponseParameters | None = None


class BotInfo(BaseModel):
    """getMe: who the token belongs to."""

    model_config = ConfigDict(extra="ignore")

    id: int
    is_bot: bool
    first_name: str
    username: str = ""
    can_join_groups: bool = False
    # False while group privacy mode is on (BotFather /setprivacy): the bot then only gets
    # commands, replies to it and @mentions from groups.
    can_read_all_group_messages: bool = False
    supports_inline_queries: bool = False


class WebhookInfo(BaseModel):
    """getWebhookInfo; ``url`` is empty when no webhook is set (polling mode)."""

    model_config = ConfigDict(extra="ignore")

    url: str = ""
    has_custom_certificate: bool = False
    pending_update_count: int = 0
    ip_address: str = ""
    last_error_date: int | None = None
    last_error_message: str = ""
    last_synchronization_error_date: int | None = None
    max_connections: int | None = None
    allowed_updates: list[str] | None = None


@dataclass(frozen=True)
class ParseContext:
    """What parsing needs to know about the connector."""

    channel: str  # connector:<id>
    bot_username: str  # without @
    bot_id: int | None = None

    def is_bot(self, user_id: int | None, username: str | None) -> bool:
        if self.bot_id is not None and user_id == self.bot_id:
            return True
        return bool(username) and str(username).lower() == self.bot_username.lower()


@dataclass(frozen=True)
class _Update:
    update_id: int
    kind: str  # the update's type: message, edited_message...

    @property
    def dedupe_key(self) -> str:
        return f"update:{self.update_id}"

    def ignored(self, reason: str) -> InboundItem:
        return InboundItem(
            dedupe_key=self.dedupe_key,
            kind="ignored",
            event_id=str(self.update_id),
            event_type=self.kind,
            reason=reason,
        )


def parse_update(payload: dict[str, Any], context: ParseContext) -> list[InboundItem]:
    """The items of one update (one at most). ``payload`` has an integer ``update_id``
    (``TelegramAdapter.verify`` checks it). Never raises: a malformed update is ignored with
    the parse error as the reason, so that Telegram stops redelivering it."""
    kinds = [key for key in payload if key != "update_id"]
    meta = _Update(int(payload["update_id"]), kinds[0] if kinds else "")
    if not kinds:
        return [meta.ignored("the update carries no content")]
    handler = UPDATE_HANDLERS.get(meta.kind)
    if handler is None:
        return [meta.ignored(IGNORED_UPDATES.get(meta.kind, f"unhandled update type {meta.kind}"))]
    try:
        update = Update.de_json(payload, None)
        return [handler(meta, update, context)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Missing required fields (KeyError), wrong types, entities that cut a character
        # in two (UnicodeDecodeError is a ValueError).
        return [meta.ignored(f"malformed {meta.kind} update: {type(exc).__name__}: {exc}")]


def _on_message(meta: _Update, update: Update, context: ParseContext) -> InboundItem:
    message = update.message
    if message is None:
        return meta.ignored("the update has no message")
    chat = message.chat
    sender = message.from_user
    refused = _not_answered(message)
    if refused or sender is None:
        return meta.ignored(refused or "the message has no sender")
    chat_type: Literal["private", "group"] = "private" if chat.type == ChatType.PRIVATE else "group"

    text, entities = _text_and_entities(message)
    attachments = [attachment.model_dump() for attachment in message_attachments(message)]
    if not text.strip() and not attachments:
        return meta.ignored(
            "no text, caption or supported attachment (a service message, location, poll...)"
        )

    addressed = _Addressing.of(message, entities, context)
    if addressed.foreign_command:
        return meta.ignored(f"a command for another bot (@{addressed.foreign_command})")
    clean = strip_ranges(text, addressed.removed)

    payload: dict[str, Any] = {"update_id": meta.update_id, "chat_type": str(chat.type)}
    thread_id = ""
    if message.is_topic_message and message.message_thread_id:
        thread_id = str(message.message_thread_id)
        payload["message_thread_id"] = message.message_thread_id
    command = addressed.command.lower()
    if command in CONNECTOR_COMMANDS:
        payload["command_args"] = clean.removeprefix("/" + addressed.command).strip()
    else:
        command = ""

    chat_message = ChatMessage(
        text=clean,
        chat_type=chat_type,
        mentioned=addressed.mentioned,
        channel=context.channel,
        chat_id=str(chat.id),
        user_id=str(sender.id),
        user_name=_display_name(sender.first_name, sender.last_name, sender.username),
        message_id=str(message.message_id),
        payload=payload,
    )
    return InboundItem(
        dedupe_key=meta.dedupe_key,
        kind="command" if command else "message",
        event_id=str(meta.update_id),
        event_type=meta.kind,
        message=chat_message,
        target=ReplyTarget(
            chat_id=str(chat.id), message_id=str(message.message_id), thread_id=thread_id
        ),
        command=command,
        attachments=attachments,
    )


def _on_my_chat_member(meta: _Update, update: Update, context: ParseContext) -> InboundItem:
    change = update.my_chat_member
    if change is None:
        return meta.ignored("the update has no my_chat_member")
    where = change.chat.title or change.chat.username or str(change.chat.id)
    return meta.ignored(
        f"the bot's membership in {where} changed from {change.old_chat_member.status} "
        f"to {change.new_chat_member.status}"
    )


UPDATE_HANDLERS: dict[str, Callable[[_Update, Update, ParseContext], InboundItem]] = {
    UpdateType.MESSAGE: _on_message,
    UpdateType.MY_CHAT_MEMBER: _on_my_chat_member,
}


def _not_answered(message: Message) -> str:
    """Why the message is not for the assistant, or "" if it may be."""
    if message.chat.type not in (ChatType.PRIVATE, ChatType.GROUP, ChatType.SUPERGROUP):
        return f"messages in {message.chat.type} chats are not answered"
    sender = message.from_user
    if sender is None:
        return "the message has no sender"
    if sender.is_bot:
        # Bots cannot see each other's messages in groups anyway, except anonymous admins
        # (GroupAnonymousBot) and channels writing as themselves, whose real author is hidden.
        return f"sent by a bot (@{sender.username or sender.id})"
    if message.is_automatic_forward:
        return "an automatic forward of a post from the linked channel"
    return ""


def _text_and_entities(message: Message) -> tuple[str, dict[MessageEntity, str]]:
    """The text (or the caption of a photo, document...) and its entities with their text,
    sliced by UTF-16 offsets by python-telegram-bot."""
    if message.text is not None:
        return message.text, message.parse_entities()
    if message.caption is not None:
        return message.caption, message.parse_caption_entities()
    return "", {}


@dataclass(frozen=True)
class _Addressing:
    """Whether a message addresses the bot, and what of it names the bot."""

    mentioned: bool
    removed: list[tuple[int, int]]  # (UTF-16 offset, length) to cut from the text
    command: str = ""  # the command the message starts with, without / and @bot
    foreign_command: str = ""  # the bot that the leading command is addressed to, if not us

    @classmethod
    def of(
        cls,
        message: Message,
        entities: dict[MessageEntity, str],
        context: ParseContext,
    ) -> _Addressing:
        mentioned = False
        removed: list[tuple[int, int]] = []
        command = foreign = ""
        me = context.bot_username.lower()
        for entity, value in sorted(entities.items(), key=lambda item: item[0].offset):
            if _names_bot(entity, value, context):
                mentioned = True
                removed.append((entity.offset, entity.length))
            elif entity.type == MessageEntityType.BOT_COMMAND:
                name, _, addressee = value[1:].partition("@")
                leading = entity.offset == 0
                if addressee.lower() == me:
                    mentioned = True
                    # "/ask@bot" -> "/ask": the suffix only, so the command stays readable.
                    removed.append((entity.offset + 1 + utf16_len(name), 1 + utf16_len(addressee)))
                elif not addressee and leading:
                    # With privacy mode on, a bare /command reaches every bot in the group;
                    # it is meant for whichever bot knows it, so count it as addressed.
                    mentioned = True
                if leading:
                    command = name
                    foreign = "" if addressee.lower() in ("", me) else addressee
        if _replies_to_bot(message, context):
            mentioned = True
        return cls(mentioned, removed, command, foreign)


def _names_bot(entity: MessageEntity, value: str, context: ParseContext) -> bool:
    """An @username mention of the bot, or a text mention (a name linked to the bot)."""
    if entity.type == MessageEntityType.MENTION:
        return value.lower() == "@" + context.bot_username.lower()
    if entity.type == MessageEntityType.TEXT_MENTION and entity.user is not None:
        return context.bot_id is not None and entity.user.id == context.bot_id
    return False


def _replies_to_bot(message: Message, context: ParseContext) -> bool:
    replied = message.reply_to_message
    if replied is None or replied.from_user is None:
        return False
    # In a forum, every message of a topic "replies" to the topic's service message; that
    # is not a reply to the bot even when the bot opened the topic.
    if replied.forum_topic_created is not None:
        return False
    return context.is_bot(replied.from_user.id, replied.from_user.username)


def strip_ranges(text: str, ranges: list[tuple[int, int]]) -> str:
    """``text`` without the given (UTF-16 offset, length) ranges.

    The spaces around each cut collapse to one (none at a line's start or end), punctuation
    typed right after a mention goes with it, and the ends are trimmed. The user's own
    line breaks and indentation elsewhere are kept: people paste code and lists.
    """
    pieces: list[str] = []
    last = 0
    for offset, length in sorted(ranges):
        start, end = utf16_index(text, offset), utf16_index(text, offset + length)
        if start < last:  # overlapping entities: already cut
            continue
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    result = pieces[0]
    for piece in pieces[1:]:
        left = result.rstrip(_HORIZONTAL_SPACE)
        right = piece.lstrip(_HORIZONTAL_SPACE)
        if right[:1] and right[0] in _AFTER_MENTION:
            right = right[1:].lstrip(_HORIZONTAL_SPACE)
        same_line = left and right and left[-1] != "\n" and right[0] not in "\n" + _CLOSING
        result = f"{left} {right}" if same_line else left + right
    return result.strip()


def message_attachments(message: Message) -> list[Attachment]:
    """The files of a message. A photo comes in several sizes: the largest is kept."""
    found: list[Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size))
        # Telegram re-encodes every photo as JPEG; the PhotoSize carries no MIME type.
        found.append(
            Attachment(
                kind="photo",
                file_id=largest.file_id,
                file_unique_id=largest.file_unique_id,
                mime_type="image/jpeg",
                file_size=largest.file_size,
            )
        )
    # An animation message also carries its file as ``document`` (for old clients).
    media: list[tuple[AttachmentKind, _Media | None]] = [
        ("animation", message.animation),
        ("document", None if message.animation is not None else message.document),
        ("video", message.video),
        ("audio", message.audio),
        ("voice", message.voice),
    ]
    found.extend(_media(kind, item) for kind, item in media if item is not None)
    if message.video_note is not None:
        note = message.video_note
        found.append(
            Attachment(
                kind="video_note",
                file_id=note.file_id,
                file_unique_id=note.file_unique_id,
                mime_type="video/mp4",
                file_size=note.file_size,
            )
        )
    if message.sticker is not None:
        sticker = message.sticker
        # Stickers are WEBP images, TGS (gzipped Lottie) animations or WEBM videos.
        if sticker.is_video:
            mime = "video/webm"
        elif sticker.is_animated:
            mime = "application/x-tgsticker"
        else:
            mime = "image/webp"
        found.append(
            Attachment(
                kind="sticker",
                file_id=sticker.file_id,
                file_unique_id=sticker.file_unique_id,
                mime_type=mime,
                file_size=sticker.file_size,
            )
        )
    return found


def _media(kind: AttachmentKind, media: _Media) -> Attachment:
    return Attachment(
        kind=kind,
        file_id=media.file_id,
        file_unique_id=media.file_unique_id,
        file_name=getattr(media, "file_name", None) or "",  # a voice message has no name
        mime_type=media.mime_type or "",
        file_size=media.file_size,
    )


def _display_name(first: str, last: str | None, username: str | None) -> str:
    name = " ".join(part for part in (first, last) if part).strip()
    return (name or username or "")[:200]
