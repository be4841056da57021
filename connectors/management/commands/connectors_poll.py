"""Long polling for the connectors that use it (Telegram ``mode: polling``): no public URL
needed. One process polls every such connector; run one (a second one gets 409 conflicts
from Telegram and backs off). The run command starts it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from channels.db import database_sync_to_async
from django.core.management.base import BaseCommand

from connectors import services
from connectors.models import Connector
from connectors.registry import connector_settings
from connectors.telegram.polling import TelegramPoller

logger = logging.getLogger(__name__)

RELOAD_EVERY_S = 15.0


def _polling_connectors() -> dict[int, tuple[Any, Any]]:
    """id -> (settings, updated_at) of enabled Telegram connectors in polling mode."""
    found: dict[int, tuple[Any, Any]] = {}
    for connector in Connector.objects.filter(enabled=True, platform="telegram"):
        if connector.config.get("mode") != "polling":
            continue
        try:
            found[connector.pk] = (connector_settings(connector), connector.updated_at)
        except Exception:  # invalid stored settings: say so, poll the others
            logger.exception("connector %s has invalid settings; not polling it", connector.pk)
    return found


class Command(BaseCommand):
    help = "Poll the platforms of connectors in polling mode (Telegram getUpdates)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--once", action="store_true", help="poll each connector once and exit (for checks)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._main(once=options["once"]))

    async def _main(self, *, once: bool) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stopping.set)
        running: dict[int, tuple[Any, asyncio.Event, asyncio.Task[None]]] = {}
        # A poller that stopped on a permanent error (a revoked token) starts again only
        # once the connector is edited.
        failed: dict[int, Any] = {}
        while True:
            wanted = await database_sync_to_async(_polling_connectors)()
            for pk, (version, stop, task) in list(running.items()):
                if task.done():
                    failed[pk] = version
                if pk not in wanted or wanted[pk][1] != version or task.done():
                    stop.set()
                    await asyncio.gather(task, return_exceptions=True)
                    del running[pk]
            for pk, (settings, version) in wanted.items():
                if pk in running or failed.get(pk) == version:
                    continue
                stop = asyncio.Event()
                poller = self._poller(pk, settings, stop, timeout_s=0 if once else 30)
                if once:
                    count = await poller.poll_once()
                    self.stdout.write(f"connector {pk}: {count} update(s)")
                    continue
                running[pk] = (version, stop, asyncio.ensure_future(self._run(pk, poller)))
                self.stdout.write(f"polling connector {pk}")
            if once:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RELOAD_EVERY_S)
            if stopping.is_set():
                for _version, stop, _task in running.values():
                    stop.set()
                await asyncio.gather(
                    *(task for *_rest, task in running.values()), return_exceptions=True
                )
                return

    @staticmethod
    def _poller(pk: int, settings: Any, stop: asyncio.Event, *, timeout_s: int) -> TelegramPoller:
        async def handle(update: dict[str, Any]) -> None:
            await database_sync_to_async(services.polled_update_store)(
                connector_id=pk, update=update
            )

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

    @staticmethod
    async def _run(pk: int, poller: TelegramPoller) -> None:
        try:
            await poller.run()
        except Exception as exc:  # a revoked token: recorded; polling resumes when edited
            logger.exception("polling connector %s stopped", pk)
            await database_sync_to_async(services.connector_error_record)(
                connector_id=pk, message=f"polling stopped: {exc}"
            )
