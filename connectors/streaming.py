"""Streaming an answer into a chat while the run that writes it executes.

A :class:`ChatStreamer` is a run observer (``workflows.signals``): it lives in the worker's
event loop next to the run, shows "typing" until the first tokens arrive, then sends a reply
message with the text so far and edits it as tokens come, no more often than the platform
allows (``Adapter.edit_interval_s``: Telegram about once a second, Feishu cards five times).
It never decides the final text: when the run is committed, the delivery of its first reply
finishes the streamed message with exactly the reply (``Adapter.stream_finish``), so what
the user finally reads is the same whether or not streaming worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from connectors.base import (
    Adapter,
    ConnectorSettings,
    DeliveryError,
    OutboundMessage,
    ReplyTarget,
    SentMessage,
)
from connectors.models import InboundEvent
from connectors.registry import adapter_for, connector_settings

if TYPE_CHECKING:
    from workflows.engine.executor import TraceEvent
    from workflows.models import Run

logger = logging.getLogger(__name__)

TYPING_EVERY_S = 4.0  # Telegram shows "typing" for 5 s
# A run that answers sooner (a template, a fast API) needs no "typing": its answer is the
# signal, and the Bot API call cost as much worker time as the rest of its delivery
# (bench/message_cost.py). Any model call takes longer, so its chat still sees "typing".
TYPING_AFTER_S = 0.3
RETRY_AFTER_ERROR_S = 2.0


@dataclass(frozen=True)
class StreamChat:
    """Where a run's answer streams to: its event's chat on its connector."""

    adapter: Adapter
    settings: ConnectorSettings
    target: ReplyTarget
    event_id: int
    stream: bool


class ChatStreamer:
    """Follows one run; see the module docstring. Its chat is looked up only when first
    needed ("typing" is due, or the first tokens): a run that answers sooner costs no query
    here (bench/message_cost.py)."""

    def __init__(self, *, run_id: str) -> None:
        self.run_id = run_id
        self.chat: StreamChat | None = None
        self.texts: dict[str, str] = {}
        self.node = ""
        self.sent: SentMessage | None = None
        self.shown = ""
        self.closing = False
        self.given_up = False
        self._lookup: asyncio.Future[StreamChat | None] | None = None
        self._wake: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"ChatStreamer(run={self.run_id})"

    async def _chat(self) -> StreamChat | None:
        # One lookup, awaited by whoever needs it first and by the other too ("typing" and
        # the first tokens can both be waiting for it); shielded, so that stopping the
        # typing task does not cancel the lookup the pump waits for.
        if self._lookup is None:
            self._lookup = asyncio.ensure_future(
                sync_to_async(stream_chat_of, thread_sensitive=True)(self.run_id)
            )
        self.chat = await asyncio.shield(self._lookup)
        return self.chat

    def on_event(self, event: TraceEvent) -> None:
        if event.kind == "run_started" and self._typing is None:
            self._typing = asyncio.ensure_future(self._keep_typing())
        elif event.kind in {"node_started", "node_retry"} and event.node_id in self.texts:
            self.texts[event.node_id] = ""  # a retried model call starts its answer again
        elif event.kind == "node_delta" and event.node_id:
            delta = str((event.outputs or {}).get("delta", ""))
            self.texts[event.node_id] = self.texts.get(event.node_id, "") + delta
            self.node = event.node_id
            if self._wake is None:
                self._wake = asyncio.Event()
                self._pump = asyncio.ensure_future(self._run_pump())
            self._wake.set()

    async def _keep_typing(self) -> None:
        await asyncio.sleep(TYPING_AFTER_S)
        chat = await self._chat()
        while chat is not None and not self.closing and self.sent is None:
            try:
                await chat.adapter.typing(chat.settings, chat.target)
            except DeliveryError as exc:
                logger.info("typing signal refused for run %s: %s", self.run_id, exc.message)
                return
            await asyncio.sleep(TYPING_EVERY_S)

    def _wanted(self, chat: StreamChat) -> str:
        text = self.texts.get(self.node, "")
        # Past what one message holds, the final delivery splits the answer; until then the
        # message shows the first part.
        return text[: chat.adapter.max_message_chars]

    async def _run_pump(self) -> None:
        assert self._wake is not None  # noqa: S101  (set before the pump starts)
        chat = await self._chat()
        if chat is None or not chat.stream:
            return
        last_edit = 0.0
        while not self.closing and not self.given_up:
            await self._wake.wait()
            self._wake.clear()
            wait = last_edit + chat.adapter.edit_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.closing:
                return
            text = self._wanted(chat)
            if not text.strip() or text == self.shown:
                continue
            try:
                if self.sent is None:
                    message = OutboundMessage(
                        text=text,
                        target=chat.target,
                        idempotency_key=f"run:{self.run_id}:stream",
                    )
                    self.sent = await chat.adapter.stream_start(chat.settings, message)
                else:
                    self.sent = await chat.adapter.stream_update(chat.settings, self.sent, text)
            except DeliveryError as exc:
                if exc.permanent:
                    self.given_up = True
                    logger.warning("streaming run %s stopped: %s", self.run_id, exc.message)
                    return
                await asyncio.sleep(max(exc.retry_after_s or 0.0, RETRY_AFTER_ERROR_S))
                self._wake.set()
                continue
            self.shown = text
            last_edit = time.monotonic()

    async def close(self) -> None:
        self.closing = True
        if self._typing is not None:
            self._typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing
        if self._pump is not None:
            assert self._wake is not None  # noqa: S101
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._lookup is not None and not self._lookup.done():
            # Started for a "typing" that the run's end cancelled: let it finish, not leave
            # it pending on the thread's loop.
            with contextlib.suppress(Exception):
                await self._lookup
        if self.sent is not None and self.chat is not None:
            stream = {"message_ids": self.sent.message_ids, "handle": self.sent.handle}
            await sync_to_async(_stream_record, thread_sensitive=True)(
                self.chat.event_id, {**stream, "text": self.shown}
            )


def _stream_record(event_id: int, stream: dict[str, Any]) -> None:
    """Remember the streamed message on the event, for the delivery that finishes it."""
    try:
        event = InboundEvent.objects.get(pk=event_id)
        event.item = {**event.item, "stream": stream}
        event.save(update_fields=["item"])
    finally:
        close_old_connections()  # a helper thread no request cycle closes for


def stream_chat_of(run_id: str) -> StreamChat | None:
    """The chat of the event that started the run, or None (no event, or no target)."""
    try:
        event = (
            InboundEvent.objects.select_related("connector")
            .defer("payload")
            .filter(run_id=run_id)
            .first()
        )
        if event is None or not event.item.get("target"):
            return None
        connector = event.connector
        return StreamChat(
            adapter=adapter_for(connector.platform),
            settings=connector_settings(connector),
            target=ReplyTarget(**event.item["target"]),
            event_id=event.pk,
            stream=connector.streaming,
        )
    finally:
        close_old_connections()  # a helper thread no request cycle closes for


def chat_streamer_for(run: Run) -> ChatStreamer | None:
    """``workflows.signals.run_observer_factories`` entry: a streamer for runs a connector
    started (no query: the streamer looks its chat up when it first needs it)."""
    from connectors.services import connector_id_of

    channel = run.input.get("channel", "") if isinstance(run.input, dict) else ""
    if run.trigger_kind != "message" or connector_id_of(str(channel)) is None:
        return None
    return ChatStreamer(run_id=str(run.pk))
