"""Connectors: receiving platform events exactly once, starting runs, delivering replies.

The path of one chat message (docs/connectors.md has the picture):

1. :func:`event_receive` (the platform's HTTP request): verify, parse, store one
   :class:`InboundEvent` per item (unique per connector and dedupe key; a redelivery is
   answered and dropped), enqueue its processing on commit, answer at once. Nothing slow
   happens before the answer, whatever the model does (Feishu wants it within 3 s).
2. :func:`event_process` (a task): commands are answered by the connector, messages are
   offered to the workflow (``workflows.services.message_receive``), linking event and run.
3. While the run executes, :mod:`connectors.streaming` edits a reply message as tokens come.
4. When the run is committed, :func:`run_replies_deliver` turns its replies into
   :class:`Delivery` rows (one idempotency key per reply) and :func:`deliveries_flush`
   sends them in order per chat, retrying 429/5xx with backoff, keeping dead letters.
5. :func:`connectors_sweep` (beat) re-enqueues what a lost task left behind and deletes
   rows past the retention period.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, TypeVar

from celery import current_app
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from assistant_site.metrics import (
    CONNECTOR_DELIVERIES,
    CONNECTOR_DELIVERY_LATENCY,
    CONNECTOR_EVENTS,
)
from assistant_site.sharing import owner_permissions_grant
from audit.services import audit_record
from connectors.base import (
    DeliveryError,
    InboundItem,
    InboundRequest,
    OutboundMessage,
    ReplyTarget,
    RequestRejected,
    SentMessage,
)
from connectors.models import Connector, Delivery, InboundEvent
from connectors.registry import adapter_for, connector_settings, secrets_dict
from workflows.exceptions import NoPublishedVersionError, WorkflowInvalidError
from workflows.models import Conversation, ConversationMessage, Run
from workflows.nodes.message_trigger import ChatMessage
from workflows.services import message_receive, message_replay, worker_thread_loop

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 1_000_000
RECEIVED_REENQUEUE_AFTER_S = 60
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0


def in_worker_task() -> bool:
    """True on a Celery worker's thread executing a task (not an eager call, which is the
    web process or a test)."""
    return current_app.current_worker_task is not None


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run an adapter call from synchronous code (tasks, the admin). A worker thread uses
    its kept event loop: a new loop per call also opened new Redis connections for the web
    chat's channel layer."""
    if in_worker_task():
        return worker_thread_loop().run_until_complete(coroutine)
    return asyncio.run(coroutine)


def channel_of(connector_id: int) -> str:
    return f"connector:{connector_id}"


def connector_id_of(channel: str) -> int | None:
    prefix, _sep, rest = channel.partition(":")
    return int(rest) if prefix == "connector" and rest.isdigit() else None


def callback_url(connector: Connector) -> str:
    """The URL to give the platform (Feishu's request URL, Telegram's setWebhook)."""
    return f"{settings.SITE_URL.rstrip('/')}/connectors/{connector.pk}/events"


# --- connectors -----------------------------------------------------------------------------


def _secrets_set(connector: Connector, given: dict[str, Any] | None) -> None:
    # Credentials are write-only: given keys replace the stored ones, the rest are kept, so
    # an administrator can rotate one secret without typing the others again.
    if given is None:
        return
    merged = {**secrets_dict(connector), **given}
    connector.secrets = json.dumps({k: v for k, v in merged.items() if v not in (None, "")})


def connector_create(*, actor: Any, data: dict[str, Any]) -> Connector:
    data = dict(data)
    secrets = data.pop("secrets", None)
    connector = Connector(created_by=actor, **data)
    _secrets_set(connector, secrets or {})
    connector.full_clean()
    with transaction.atomic():
        connector.save()
        owner_permissions_grant(user=actor, obj=connector)
    return connector


DEMO_WEBCHAT = "网页聊天 Web chat (demo)"


def demo_webchat_ensure(*, owner: Any, workflow: Any) -> tuple[Connector, bool]:
    """The demo web chat connector, made (bound to ``workflow``, this site only) unless one of
    its name exists, edited or not. Answers it and whether it was made now."""
    existing = Connector.objects.filter(name=DEMO_WEBCHAT).first()
    if existing is not None:
        return existing, False
    connector = connector_create(
        actor=owner,
        data={
            "name": DEMO_WEBCHAT,
            "platform": "webchat",
            "workflow": workflow,
            "config": {"title": "演示助手 Demo assistant"},
        },
    )
    return connector, True


def connector_update(*, connector: Connector, data: dict[str, Any]) -> Connector:
    data = dict(data)
    secrets = data.pop("secrets", None)
    for field, value in data.items():
        setattr(connector, field, value)
    _secrets_set(connector, secrets)
    connector.full_clean()
    with transaction.atomic():
        connector.save()
    return connector


def connector_delete(*, connector: Connector) -> None:
    with transaction.atomic():
        connector.delete()


def connector_error_record(*, connector_id: int, message: str) -> None:
    """Record a permanent platform error of the connector's setup (bad credentials, a
    missing scope) for the admin's list; it stays enabled, so fixing the setup is enough."""
    Connector.objects.filter(pk=connector_id).update(
        last_error=message[:2000], last_error_at=timezone.now()
    )


def connector_identify(*, connector: Connector) -> Connector:
    """Ask the platform who the bot is and store it in the config: Feishu's bot open_id
    (how @-mentions of the bot are recognised), Telegram's username and id."""
    current = connector_settings(connector)
    if connector.platform == "feishu":
        from connectors.feishu.adapter import FeishuAdapter

        bot = run_async(FeishuAdapter().bot_identity(current))
        found: dict[str, Any] = {"bot_open_id": bot["open_id"]}
    elif connector.platform == "telegram":
        from connectors.telegram import api as telegram_api

        me = run_async(telegram_api.get_me(current))
        found = {"bot_username": me.username, "bot_id": me.id}
    else:
        raise ValueError(f"{connector.platform} connectors have no bot identity to read")
    return connector_update(connector=connector, data={"config": {**connector.config, **found}})


def telegram_webhook_set(*, connector: Connector, actor: Any, remove: bool = False) -> str:
    """Register (or remove) the connector's callback URL with Telegram; audited."""
    from connectors.telegram import api as telegram_api

    if connector.platform != "telegram":
        raise ValueError("only Telegram connectors register a webhook")
    current = connector_settings(connector)
    url = "" if remove else callback_url(connector)
    if remove:
        run_async(telegram_api.delete_webhook(current))
    else:
        run_async(telegram_api.set_webhook(current, url))
    with transaction.atomic():
        Connector.objects.filter(pk=connector.pk).update(webhook_url=url)
        audit_record(
            action="connector.webhook_delete" if remove else "connector.webhook_set",
            target=connector,
            actor=actor,
            extra={"url": url},
        )
    connector.webhook_url = url
    return url


def polled_update_store(*, connector_id: int, update: dict[str, Any]) -> None:
    """Store an update that long polling fetched (already authenticated by our own call to
    the platform), exactly like one pushed to the callback URL."""
    event_receive(
        connector_id=connector_id,
        request=InboundRequest(body=b"", headers={}, received_at=time.time()),
        payload=update,
    )


LISTENER_HEALTH_TTL_S = 60


def listener_health_publish(*, health: dict[int, dict[str, Any]]) -> None:
    """The listener process's report on each polling or long-connection connector."""
    cache.set_many(
        {f"connectors:listener:{pk}": state for pk, state in health.items()},
        timeout=LISTENER_HEALTH_TTL_S,
    )


def listener_health(connector: Connector) -> dict[str, Any] | None:
    """What the listener process last said about the connector (None: no listener reported
    in the last minute; is ``manage.py connectors_poll`` running?)."""
    state: dict[str, Any] | None = cache.get(f"connectors:listener:{connector.pk}")
    return state


def poll_offset_get(*, connector_id: int) -> int | None:
    offset: int | None = (
        Connector.objects.filter(pk=connector_id).values_list("poll_offset", flat=True).first()
    )
    return offset


def poll_offset_set(*, connector_id: int, offset: int) -> None:
    Connector.objects.filter(pk=connector_id).update(poll_offset=offset)


# --- inbound events -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiveAnswer:
    """The HTTP answer to a platform's request."""

    status: int
    body: dict[str, Any]


def _item_data(item: InboundItem) -> dict[str, Any]:
    return {
        "message": item.message.model_dump(mode="json") if item.message else None,
        "target": asdict(item.target) if item.target else None,
        "command": item.command,
        "attachments": item.attachments,
    }


def _group_refusal(connector: Connector, item: InboundItem) -> str:
    message = item.message
    if item.kind == "ignored" or message is None or message.chat_type != "group":
        return ""
    if connector.group_policy == Connector.GroupPolicy.NEVER:
        return "the connector stays silent in group chats"
    if connector.group_policy == Connector.GroupPolicy.MENTIONED and not message.mentioned:
        return "a group message that does not address the bot"
    return ""


def event_receive(
    *, connector_id: int, request: InboundRequest, payload: dict[str, Any] | None = None
) -> ReceiveAnswer:
    """Verify, parse and store one platform request; see the module docstring.

    Refusals raise :class:`RequestRejected`. ``payload`` skips verification for events that
    arrive already authenticated (Feishu's long connection, Telegram's long polling).
    """
    connector = Connector.objects.filter(pk=connector_id, enabled=True).first()
    if connector is None:
        raise RequestRejected(404, "url", "no enabled connector has this id")
    adapter = adapter_for(connector.platform)
    labels = (str(connector.pk), connector.platform)
    if len(request.body) > MAX_BODY_BYTES:
        CONNECTOR_EVENTS.labels(*labels, "rejected").inc()
        raise RequestRejected(413, "body", f"the body is larger than {MAX_BODY_BYTES} bytes")
    current = connector_settings(connector)
    if payload is None:
        try:
            verified = adapter.verify(current, request)
        except RequestRejected as exc:
            CONNECTOR_EVENTS.labels(
                *labels, "rejected_signature" if exc.signature else "rejected"
            ).inc()
            if exc.signature:
                logger.warning(
                    "connector %s refused a request from %s: %s (%s)",
                    connector.pk,
                    request.remote_addr or "unknown address",
                    exc.message,
                    exc.field,
                )
            raise
        if verified.immediate is not None:
            return ReceiveAnswer(200, verified.immediate)
        payload = verified.payload
    items = adapter.parse(current, payload)
    for item in items:
        _event_store(connector, item, payload, request.remote_addr)
    return ReceiveAnswer(200, {"ok": True})


def _event_store(
    connector: Connector, item: InboundItem, payload: dict[str, Any], source_ip: str
) -> InboundEvent | None:
    labels = (str(connector.pk), connector.platform)
    reason = item.reason if item.kind == "ignored" else _group_refusal(connector, item)
    message = item.message
    event = InboundEvent(
        connector=connector,
        dedupe_key=item.dedupe_key[:200],
        event_id=item.event_id[:200],
        event_type=item.event_type[:100],
        kind=item.kind,
        message_id=(message.message_id if message else "")[:200],
        chat_id=(item.target.chat_id if item.target else "")[:200],
        user_id=(message.user_id if message else "")[:200],
        text=message.text if message else "",
        item=_item_data(item),
        payload=payload,
        source_ip=source_ip or None,
        status=InboundEvent.Status.IGNORED if reason else InboundEvent.Status.RECEIVED,
        reason=reason,
        processed_at=timezone.now() if reason else None,
    )
    # The usual redelivery is found by a read: a failed INSERT would also work, but costs a
    # rollback and makes PostgreSQL log the statement, payload and all, as an error.
    if InboundEvent.objects.filter(connector=connector, dedupe_key=event.dedupe_key).exists():
        CONNECTOR_EVENTS.labels(*labels, "duplicate").inc()
        return None
    try:
        with transaction.atomic():
            event.save()
            if not reason:
                transaction.on_commit(functools.partial(_enqueue_event, event.pk))
    except IntegrityError:
        # Unique per (connector, dedupe key): a redelivery racing the first delivery.
        CONNECTOR_EVENTS.labels(*labels, "duplicate").inc()
        return None
    CONNECTOR_EVENTS.labels(*labels, "ignored" if reason else "accepted").inc()
    return event


def _enqueue_event(event_id: int) -> None:
    from connectors.tasks import event_process_task

    event_process_task.delay(event_id)


# What the workers never read back from an event they answer. Loading (and decoding) them
# cost a third of a message's event step (bench/message_cost.py).
_WIDE_EVENT_FIELDS = ("payload",)


def _event_claim(event_id: int) -> InboundEvent | None:
    claimed = InboundEvent.objects.filter(pk=event_id, status=InboundEvent.Status.RECEIVED).update(
        status=InboundEvent.Status.PROCESSING
    )
    if not claimed:
        return None  # another delivery of the task took it, or it is done
    return (
        InboundEvent.objects.select_related("connector", "connector__workflow")
        .defer(*_WIDE_EVENT_FIELDS, "connector__workflow__draft")
        .get(pk=event_id)
    )


def _event_finish(
    event: InboundEvent, status: str, reason: str = "", run: Run | None = None
) -> None:
    event.status, event.reason, event.run = status, reason, run
    event.processed_at = timezone.now()
    event.save(update_fields=["status", "reason", "run", "processed_at"])


def _target_of(event: InboundEvent) -> ReplyTarget:
    data = event.item.get("target") or {"chat_id": event.chat_id}
    return ReplyTarget(**data)


def event_process(*, event_id: int) -> InboundEvent | None:
    """Answer a stored event: a command, or a message offered to the connector's workflow."""
    event = _event_claim(event_id)
    if event is None:
        return None
    connector = event.connector
    if event.kind == "command":
        _command_answer(event)
        return event
    message = ChatMessage.model_validate(event.item["message"])
    answered = False  # a reply of the connector's own to send now (the run's come later)
    try:
        with transaction.atomic():
            # On a worker, the run executes on this thread once committed: one task hop less.
            outcome = message_receive(
                workflow=connector.workflow, message=message, execute_here=in_worker_task()
            )
            if outcome.status == "started":
                _event_finish(event, InboundEvent.Status.STARTED, run=outcome.run)
            elif outcome.status == "rate_limited":
                _event_finish(event, InboundEvent.Status.RATE_LIMITED, outcome.reason)
                if outcome.reply:
                    _delivery_add(event, f"event:{event.pk}:limit", outcome.reply)
                    answered = True
            else:
                _event_finish(event, InboundEvent.Status.IGNORED, outcome.reason)
    except NoPublishedVersionError as exc:
        with transaction.atomic():
            _event_finish(event, InboundEvent.Status.FAILED, str(exc))
            if connector.error_text:
                _delivery_add(event, f"event:{event.pk}:error", connector.error_text)
                answered = True
    if answered:
        _flush_after_commit(connector.pk, event.chat_id, here=True)
    return event


def _command_answer(event: InboundEvent) -> None:
    connector = event.connector
    command = event.item.get("command", "")
    if command == "reset":
        Conversation.objects.filter(
            workflow=connector.workflow,
            channel=channel_of(connector.pk),
            chat_id=event.chat_id,
            end_user_id=event.user_id,
        ).delete()
        text = _("Done: I have forgotten our conversation. What would you like to ask?")
    else:  # start, help
        text = connector.welcome_text
    with transaction.atomic():
        _event_finish(event, InboundEvent.Status.ANSWERED, f"/{command}")
        if text:
            _delivery_add(event, f"event:{event.pk}:command", text)
    _flush_after_commit(connector.pk, event.chat_id, here=True)


def _delivery_add(event: InboundEvent, key: str, text: str, run: Run | None = None) -> Delivery:
    target = _target_of(event)
    delivery, _created = Delivery.objects.get_or_create(
        idempotency_key=key,
        defaults={
            "connector_id": event.connector_id,
            "event": event,
            "run": run,
            "chat_id": target.chat_id,
            "target": asdict(target),
            "text": text,
        },
    )
    return delivery


class ReplayError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def event_replay(*, event: InboundEvent, actor: Any) -> Run:
    """Offer a stored message to the workflow's current draft (a test run, not delivered)."""
    if not event.item.get("message"):
        raise ReplayError("kind", "only chat messages can be replayed")
    message = ChatMessage.model_validate(event.item["message"])
    try:
        return message_replay(workflow=event.connector.workflow, message=message, actor=actor)
    except WorkflowInvalidError as exc:
        first = exc.problems[0] if exc.problems else {"message": str(exc)}
        raise ReplayError("draft", str(first.get("message", exc))) from exc


# --- web chat -------------------------------------------------------------------------------

VISITOR_TOKEN_MAX_AGE_S = 30 * 24 * 3600
WEBCHAT_HISTORY_LIMIT = 100


def _webchat_signing(connector: Connector) -> tuple[str, str]:
    key = str(secrets_dict(connector).get("signing_key") or settings.SECRET_KEY)
    return key, f"connectors.webchat:{connector.pk}"


def webchat_token_issue(*, connector: Connector, token: str = "") -> tuple[str, str]:
    """A signed visitor token (and the visitor id): the one given if still valid, so a
    returning visitor keeps their conversation, else a new visitor's."""
    visitor = webchat_visitor_of(connector=connector, token=token) if token else None
    if visitor is None:
        visitor = f"v-{uuid.uuid4().hex}"
    key, salt = _webchat_signing(connector)
    return signing.dumps({"visitor": visitor}, key=key, salt=salt, compress=True), visitor


def webchat_visitor_of(*, connector: Connector, token: str) -> str | None:
    key, salt = _webchat_signing(connector)
    try:
        data = signing.loads(token, key=key, salt=salt, max_age=VISITOR_TOKEN_MAX_AGE_S)
    except signing.BadSignature:  # also expired tokens
        return None
    visitor = data.get("visitor") if isinstance(data, dict) else None
    return visitor if isinstance(visitor, str) and visitor else None


def webchat_message_receive(
    *, connector_id: int, visitor: str, client_id: str, text: str, source_ip: str = ""
) -> InboundEvent | None:
    """Store a visitor's message like a platform event; None when this client message id
    was received before (a widget resending after a reconnect)."""
    connector = Connector.objects.get(pk=connector_id, enabled=True)
    message = ChatMessage(
        text=text,
        chat_type="private",
        channel=channel_of(connector.pk),
        chat_id=visitor,
        user_id=visitor,
        message_id=client_id,
    )
    item = InboundItem(
        dedupe_key=f"client:{visitor}:{client_id}",
        kind="message",
        event_type="webchat.message",
        message=message,
        target=ReplyTarget(chat_id=visitor, message_id=client_id),
    )
    return _event_store(connector, item, {"id": client_id, "text": text}, source_ip)


def webchat_history(*, connector_id: int, visitor: str, after: str = "") -> list[dict[str, Any]]:
    """Replies sent to the visitor after the one with id ``after`` (all recent ones when
    empty or unknown), oldest first, as the widget shows them."""
    rows = list(
        Delivery.objects.filter(
            connector_id=connector_id, chat_id=visitor, status=Delivery.Status.SENT
        ).order_by("-pk")[: WEBCHAT_HISTORY_LIMIT * 5]
    )
    shown = [
        {
            "id": (row.message_ids or [row.idempotency_key])[0],
            "text": row.text,
            "reply_to": row.target.get("message_id", ""),
        }
        for row in reversed(rows)
    ]
    ids = [message["id"] for message in shown]
    if after in ids:
        return shown[ids.index(after) + 1 :]
    return shown[-WEBCHAT_HISTORY_LIMIT:]


# --- replies of runs ------------------------------------------------------------------------


def run_finished_receiver(sender: Any, run: Run, **kwargs: Any) -> None:
    """``workflows.signals.run_finished``: deliver the replies of runs a connector started."""
    channel = run.input.get("channel", "") if isinstance(run.input, dict) else ""
    if run.trigger_kind != "message" or connector_id_of(str(channel)) is None:
        return
    from connectors.tasks import run_replies_deliver_task

    run_id = str(run.pk)
    transaction.on_commit(
        functools.partial(
            _here_or_queued,
            lambda: run_replies_deliver(run_id=run_id),
            run_replies_deliver_task,
            run_id,
        )
    )


def _here_or_queued(here: Callable[[], object], task: Any, *args: Any) -> None:
    """On a worker's thread, do it now: the answer leaves from the thread that ran the run,
    without a task hop (bench/end_to_end.py, docs/benchmarks.md). Elsewhere (the web process,
    eager tests), or when doing it here fails, queue ``task`` with ``args`` as before."""
    if in_worker_task():
        try:
            here()
            return
        except Exception:
            logger.exception("%s%r failed on this worker thread; queued again", task.name, args)
    task.delay(*args)


def run_replies_deliver(*, run_id: str) -> list[Delivery]:
    """Turn a finished run's replies into deliveries (once per reply, whatever the number of
    calls) and send them. A failed run without a reply sends the connector's error text."""
    event = (
        InboundEvent.objects.select_related("connector", "run")
        .defer(*_WIDE_EVENT_FIELDS, "run__graph", "run__input", "run__output", "run__error")
        .filter(run_id=run_id)
        .first()
    )
    if event is None or event.run is None:
        return []
    run, connector = event.run, event.connector
    replies = list(
        ConversationMessage.objects.filter(run=run, role=ConversationMessage.Role.ASSISTANT)
        .order_by("id")
        .values_list("text", flat=True)
    )
    if not replies and run.status != Run.Status.SUCCEEDED and connector.error_text:
        replies = [connector.error_text]
    stream = event.item.get("stream") or {}
    if not replies and stream.get("message_ids"):
        # Streamed but no reply node answered: leave the streamed text as the answer.
        replies = [stream.get("text", "")]
    deliveries: list[Delivery] = []
    with transaction.atomic():
        for index, text in enumerate(replies):
            delivery = _delivery_add(event, f"run:{run.pk}:{index}", text, run=run)
            if (
                index == 0
                and stream.get("message_ids")
                and delivery.status == Delivery.Status.PENDING
            ):
                delivery.status = Delivery.Status.STREAMING
                delivery.message_ids = stream["message_ids"]
                delivery.handle = stream.get("handle") or {}
                delivery.save(update_fields=["status", "message_ids", "handle"])
            deliveries.append(delivery)
        InboundEvent.objects.filter(pk=event.pk).update(status=InboundEvent.Status.REPLIED)
    _flush_after_commit(connector.pk, event.chat_id, here=True)
    return deliveries


def _flush_after_commit(
    connector_id: int, chat_id: str, countdown: float = 0, *, here: bool = False
) -> None:
    """Send the chat's open deliveries once the current transaction commits: from a task,
    or with ``here`` (and no countdown) on this worker thread, one task hop less per answer.
    Sending here falls back to the task when it fails."""
    from connectors.tasks import deliveries_flush_task

    if here and not countdown:
        transaction.on_commit(
            functools.partial(
                _here_or_queued,
                lambda: deliveries_flush(connector_id=connector_id, chat_id=chat_id),
                deliveries_flush_task,
                connector_id,
                chat_id,
            )
        )
    else:
        transaction.on_commit(
            lambda: deliveries_flush_task.apply_async((connector_id, chat_id), countdown=countdown)
        )


# --- delivery -------------------------------------------------------------------------------

_OPEN = (Delivery.Status.PENDING, Delivery.Status.STREAMING)


def _backoff_s(attempt: int, retry_after_s: float | None) -> float:
    delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311
    return max(delay, retry_after_s or 0.0, 1.0)


def _send(connector: Connector, delivery: Delivery) -> SentMessage:
    adapter = adapter_for(connector.platform)
    current = connector_settings(connector)
    before = (
        SentMessage(message_ids=list(delivery.message_ids), handle=dict(delivery.handle))
        if delivery.message_ids
        else None
    )
    message = OutboundMessage(
        text=delivery.text,
        target=ReplyTarget(**delivery.target),
        idempotency_key=delivery.idempotency_key,
        sent_before=before,
    )
    if delivery.status == Delivery.Status.STREAMING:
        sent = SentMessage(message_ids=list(delivery.message_ids), handle=dict(delivery.handle))
        return run_async(adapter.stream_finish(current, sent, delivery.text))
    return run_async(adapter.send(current, message))


def deliveries_flush(*, connector_id: int, chat_id: str) -> int:
    """Send a chat's open deliveries oldest first, one sender per chat at a time (the head
    delivery's row lock), so replies arrive in order. Answers how many were sent.

    A temporary failure stops the chat's queue until the retry (order is kept); a permanent
    one turns the delivery into a dead letter and the queue goes on.
    """
    sent = 0
    open_deliveries = Delivery.objects.filter(
        connector_id=connector_id, chat_id=chat_id, status__in=_OPEN
    )
    while True:
        # After a send, the usual answer is "nothing more": a plain read says so in one
        # statement. A delivery committed since is seen here too (its own flush found this
        # chat locked and left it to this loop).
        if sent and not open_deliveries.exists():
            return sent
        with transaction.atomic():
            try:
                head = (
                    open_deliveries.select_for_update(nowait=True, of=("self",))
                    .select_related("connector", "event")
                    .defer(*(f"event__{name}" for name in _WIDE_EVENT_FIELDS), "event__item")
                    .order_by("created_at", "id")
                    .first()
                )
            except OperationalError:  # LockNotAvailable: another sender holds this chat
                return sent  # and goes on with its queue
            if head is None:
                return sent
            now = timezone.now()
            if head.next_attempt_at and head.next_attempt_at > now:
                wait = (head.next_attempt_at - now).total_seconds()
                _flush_after_commit(connector_id, chat_id, countdown=wait)
                return sent
            if not _delivery_attempt(head):
                return sent
            sent += 1


def _delivery_attempt(delivery: Delivery) -> bool:
    """One try; answers whether the chat's queue may go on. Called holding the row lock."""
    connector = delivery.connector
    labels = (str(connector.pk), connector.platform)
    delivery.attempts += 1
    try:
        result = _send(connector, delivery)
    except DeliveryError as exc:
        delivery.last_error = exc.message[:2000]
        if exc.sent is not None:  # part of a long reply went out: the retry sends the rest
            delivery.message_ids, delivery.handle = exc.sent.message_ids, exc.sent.handle
            delivery.save(update_fields=["message_ids", "handle"])
        if exc.permanent or delivery.attempts >= settings.CONNECTOR_DELIVERY_ATTEMPTS:
            delivery.status = Delivery.Status.DEAD
            delivery.next_attempt_at = None
            delivery.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
            CONNECTOR_DELIVERIES.labels(*labels, "dead").inc()
            if exc.permanent and exc.scope == "connector":
                connector_error_record(connector_id=connector.pk, message=exc.message)
            logger.warning(
                "reply %s to chat %s is a dead letter: %s",
                delivery.idempotency_key,
                delivery.chat_id,
                exc.message,
            )
            return True
        delay = _backoff_s(delivery.attempts - 1, exc.retry_after_s)
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        delivery.save(update_fields=["attempts", "last_error", "next_attempt_at"])
        CONNECTOR_DELIVERIES.labels(*labels, "retry").inc()
        _flush_after_commit(connector.pk, delivery.chat_id, countdown=delay)
        return False
    moved = result.handle.get("migrated_to_chat_id")
    if moved:
        _chat_moved(connector, old=delivery.chat_id, new=str(moved))
    delivery.status = Delivery.Status.SENT
    delivery.message_ids = result.message_ids
    delivery.handle = result.handle
    delivery.sent_at = timezone.now()
    delivery.next_attempt_at = None
    delivery.save(
        update_fields=["attempts", "status", "message_ids", "handle", "sent_at", "next_attempt_at"]
    )
    CONNECTOR_DELIVERIES.labels(*labels, "sent").inc()
    if delivery.event is not None:
        CONNECTOR_DELIVERY_LATENCY.labels(connector.platform).observe(
            (delivery.sent_at - delivery.event.received_at).total_seconds()
        )
    return True


def _chat_moved(connector: Connector, *, old: str, new: str) -> None:
    """A group became a supergroup under a new id (Telegram): its members' conversations
    follow, so the bot keeps its memory of them."""
    conversations = Conversation.objects.filter(
        workflow=connector.workflow, channel=channel_of(connector.pk), chat_id=old
    )
    for conversation in conversations:
        try:
            with transaction.atomic():
                Conversation.objects.filter(pk=conversation.pk).update(chat_id=new)
        except IntegrityError:
            pass  # the member already wrote in the new group: that conversation goes on
    logger.info("connector %s: chat %s moved to %s", connector.pk, old, new)


def delivery_retry(*, delivery: Delivery, actor: Any) -> Delivery:
    """Send a dead letter again (from the admin), with a fresh set of attempts."""
    with transaction.atomic():
        # A streamed answer that could not be finished is finished, not sent a second time.
        streamed = bool(delivery.message_ids) and delivery.sent_at is None
        delivery.status = Delivery.Status.STREAMING if streamed else Delivery.Status.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = None
        delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
        audit_record(
            action="delivery.retry",
            target=delivery.connector,
            actor=actor,
            extra={"delivery": delivery.idempotency_key, "chat": delivery.chat_id},
        )
        _flush_after_commit(delivery.connector_id, delivery.chat_id)
    return delivery


# --- sweeper --------------------------------------------------------------------------------


def connectors_sweep(*, now: Any = None) -> dict[str, int]:
    """Re-enqueue work a lost task left behind; delete what is past retention."""
    now = now or timezone.now()
    counts = {"events": 0, "replies": 0, "chats": 0, "deleted": 0}
    stale = now - timedelta(seconds=RECEIVED_REENQUEUE_AFTER_S)
    with transaction.atomic():
        for pk in InboundEvent.objects.filter(
            status=InboundEvent.Status.RECEIVED, received_at__lt=stale
        ).values_list("pk", flat=True)[:1000]:
            transaction.on_commit(functools.partial(_enqueue_event, pk))
            counts["events"] += 1
        # Runs that finished a while ago but whose replies were never turned into deliveries
        # (the worker died between the commit and the signal).
        forgotten = InboundEvent.objects.filter(
            status=InboundEvent.Status.STARTED,
            run__finished_at__lt=stale,
            received_at__gt=now - timedelta(days=1),
        ).values_list("run_id", flat=True)[:1000]
        from connectors.tasks import run_replies_deliver_task

        for run_id in forgotten:
            transaction.on_commit(functools.partial(run_replies_deliver_task.delay, str(run_id)))
            counts["replies"] += 1
        chats = (
            Delivery.objects.filter(status__in=_OPEN)
            .filter(
                Q(next_attempt_at__isnull=True, created_at__lt=stale) | Q(next_attempt_at__lt=stale)
            )
            .values_list("connector_id", "chat_id")
            .distinct()[:1000]
        )
        for connector_id, chat_id in chats:
            _flush_after_commit(connector_id, chat_id)
            counts["chats"] += 1
    cutoff = now - timedelta(days=settings.CONNECTOR_RETENTION_DAYS)
    deleted, _by_model = (
        Delivery.objects.filter(created_at__lt=cutoff).exclude(status__in=_OPEN).delete()
    )
    deleted_events, _by_model = InboundEvent.objects.filter(received_at__lt=cutoff).delete()
    counts["deleted"] = deleted + deleted_events
    return counts
