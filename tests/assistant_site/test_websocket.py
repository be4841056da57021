from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import REPO, free_port, wait_for_port


@pytest.fixture
def asgi_server(redis_url: str) -> Iterator[int]:
    """The real ASGI application under uvicorn, with the channels-redis layer on Redis."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assistant_site.settings.test",
        "REDIS_URL": redis_url,
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "assistant_site.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=60)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


async def _ping(websocket: object) -> str:
    await websocket.send("ping")  # type: ignore[attr-defined]
    reply: str = await asyncio.wait_for(websocket.recv(), timeout=10)  # type: ignore[attr-defined]
    return reply


@pytest.mark.slow
def test_websocket_stays_open_and_answers_after_sixty_seconds(asgi_server: int) -> None:
    async def scenario() -> list[str]:
        url = f"ws://127.0.0.1:{asgi_server}/ws/ping/"
        # No client-side keepalive pings: the socket must survive on its own.
        async with connect(url, origin="http://127.0.0.1", ping_interval=None) as websocket:  # type: ignore[arg-type]
            replies = [await _ping(websocket)]
            await asyncio.sleep(61)
            replies.append(await _ping(websocket))
            return replies

    assert asyncio.run(scenario()) == ["pong", "pong"]


def test_websocket_from_a_foreign_origin_is_refused(asgi_server: int) -> None:
    async def scenario() -> None:
        url = f"ws://127.0.0.1:{asgi_server}/ws/ping/"
        async with connect(url, origin="http://evil.example", ping_interval=None):  # type: ignore[arg-type]
            pass

    with pytest.raises(Exception, match="403"):
        asyncio.run(scenario())
