"""Events for the connectors that fetch them instead of receiving pushes: Telegram
``mode: polling`` (getUpdates) and Feishu ``mode: long_connection`` (a WebSocket to Feishu).
Neither needs a public URL. One process serves every such connector; run exactly one (a
second Telegram poller gets 409 conflicts and backs off). The run command starts it.

Every few seconds the process re-reads the connectors, starting listeners for new ones and
restarting those whose connector was edited, and publishes each listener's health to the
cache, where the connector API shows it (``listener``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.core.management.base import BaseCommand

from connectors import services
from connectors.base import ConnectorSettings
from connectors.models import Connector
from connectors.registry import connector_settings

logger = logging.getLogger(__name__)

RELOAD_EVERY_S = 15.0


@dataclass
class _Listener:
    version: Any  # the connector's updated_at when started
    stop: asyncio.Event
    task: asyncio.Task[None]
    source: Any  # TelegramPoller or FeishuLongConnection


def _wanted() -> dict[int, tuple[ConnectorSettings, Any, str]]:
    """id -> (settings, updated_at, kind) of enabled connectors that fetch their events."""
    found: dict[int, tuple[ConnectorSettings, Any, str]] = {}
    for connector in Connector.objects.filter(enabled=True, platform__in=["telegram", "feishu"]):
        mode = connector.config.get("mode")
        kind = {("telegram", "polling"): "telegram", ("feishu", "long_connection"): "feishu"}.get(
            (connector.platform, mode)
        )
        if kind is None:
            continue
        try:
            found[connector.pk] = (connector_settings(connector), connector.updated_at, kind)
        except Exception:  # invalid stored settings: say so, serve the others
            logger.exception("connector %s has invalid settings; not listening", connector.pk)
    return found


def _health(source: Any) -> dict[str, Any]:
    health = getattr(source, "health", None)
    return dict(health()) if callable(health) else {"running": True}


class Command(BaseCommand):
    help = (
        "Fetch events for connectors in polling mode (Telegram getUpdates) and long-connection "
        "mode (Feishu WebSocket)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="poll each Telegram connector once and exit (for checks)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._main(once=options["once"]))

    async def _main(self, *, once: bool) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stopping.set)
        await self.listen(stopping, once=once)

    async def listen(
        self, stopping: asyncio.Event, *, once: bool = False, reload_every_s: float = RELOAD_EVERY_S
    ) -> None:
        """Serve until ``stopping`` is set (or one round with ``once``)."""
        running: dict[int, _Listener] = {}
        # A listener that stopped on a permanent error (a revoked token) starts again only
        # once the connector is edited.
        failed: dict[int, Any] = {}
        while True:
            wanted = await database_sync_to_async(_wanted)()
            for pk, listener in list(running.items()):
                if listener.task.done():
                    failed[pk] = listener.version
                if pk not in wanted or wanted[pk][1] != listener.version or listener.task.done():
                    listener.stop.set()
                    await asyncio.gather(listener.task, return_exceptions=True)
                    del running[pk]
            for pk, (settings, version, kind) in wanted.items():
                if pk in running or failed.get(pk) == version:
                    continue
                stop = asyncio.Event()
                if once:
                    if kind == "telegram":
                        count = await self._poller(pk, settings, stop, timeout_s=0).poll_once()
                        self.stdout.write(f"connector {pk}: {count} update(s)")
                    continue
                source = (
                    self._poller(pk, settings, stop, timeout_s=30)
                    if kind == "telegram"
                    else self._long_connection(pk, settings, stop)
                )
                task = asyncio.ensure_future(self._run(pk, source))
                running[pk] = _Listener(version, stop, task, source)
                self.stdout.write(f"listening for connector {pk} ({kind})")
            if once:
                return
            health = {pk: _health(listener.source) for pk, listener in running.items()}
            await database_sync_to_async(services.listener_health_publish)(health=health)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), reload_every_s)
            if stopping.is_set():
                for listener in running.values():
                    listener.stop.set()
                await asyncio.gather(
                    *(listener.task for listener in running.values()), return_exceptions=True
                )
                return

    @staticmethod
    async def _store(pk: int, payload: dict[str, Any]) -> None:
        await database_sync_to_async(services.polled_update_store)(connector_id=pk, update=payload)

    def _poller(
        self, pk: int, settings: ConnectorSettings, stop: asyncio.Event, *, timeout_s: int
    ) -> Any:
        from connectors.telegram.polling import TelegramPoller

        async def handle(update: dict[str, Any]) -> None:
            await self._store(pk, update)

        return TelegramPoller(
            settings,
            handle,
            get_offset=database_sync_to_async(lambda: services.poll_offset_get(connector_id=pk)),
            set_offset=database_sync_to_async(
                lambda offset: services.poll_offset_set(connector_id=pk, offset=offset)
            ),
            stop=stop,
            timeout_s=timeout_s,
        )

    def _long_connection(self, pk: int, settings: ConnectorSettings, stop: asyncio.Event) -> Any:
        from connectors.feishu.longconn import FeishuLongConnection

        async def handle(payload: dict[str, Any]) -> None:
            # Stored like a webhook push; Feishu gets its acknowledgement only after this.
            await self._store(pk, payload)

        return FeishuLongConnection(settings, handle, stop=stop)

    @staticmethod
    async def _run(pk: int, source: Any) -> None:
        try:
            await source.run()
        except Exception as exc:  # a revoked token: recorded; listening resumes when edited
            logger.exception("listening for connector %s stopped", pk)
            await database_sync_to_async(services.connector_error_record)(
                connector_id=pk, message=f"listening stopped: {exc}"
            )
