"""Serving a protocol double: an aiohttp application on a loopback port, from a thread with
its own event loop, so that synchronous tests and in-process workers can call it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import ClassVar, Self

from aiohttp import web

SHUTDOWN_TIMEOUT_S = 0.5


class ThreadedDouble:
    """Subclasses set ``host`` and ``port`` (0: any free port, the bound one is written back)
    and build their application in :meth:`make_app`. ``with Double() as double:`` starts and
    stops it."""

    label: ClassVar[str] = "protocol"
    host: str
    port: int
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stopped: asyncio.Event | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def on_loop_start(self) -> None:
        """Create what must belong to the serving loop (events, queues), before serving."""

    async def on_stopping(self) -> None:
        """Called before the server closes (e.g. to close open WebSockets cleanly)."""

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"the {self.label} double is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name=f"{self.label}-double", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout=30):
            raise TimeoutError(f"the {self.label} double did not start within 30 s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None or loop is None or stopped is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._run(ready))
        except BaseException as exc:  # reported to start() in the calling thread
            failure.append(exc)
            ready.set()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _run(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        await self.on_loop_start()
        runner = web.AppRunner(
            self.make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            ready.set()
            await self._stopped.wait()
            await self.on_stopping()
        finally:
            await runner.cleanup()
