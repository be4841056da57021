"""Streaming reassembly when the network cuts the SSE stream anywhere: a TCP relay between the
gateway and the vLLM double forwards the answer a few bytes at a time, so events, JSON and
even multi-byte UTF-8 characters arrive split across reads."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator

import pytest

from tests.doubles.vllm_server import VllmDouble
from tests.workflows.llm.support import ask, endpoint_for, fast_gateway, run


class SplittingRelay:
    """Loopback TCP relay; the server-to-client direction is written in 1-7 byte pieces."""

    def __init__(self, upstream_port: int, seed: int) -> None:
        self.upstream_port = upstream_port
        self.random = random.Random(seed)  # noqa: S311  (reproducible cuts, not secrets)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def forward() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def backward() -> None:
            while data := await up_reader.read(65536):
                while data:
                    size = self.random.randint(1, 7)
                    piece, data = data[:size], data[size:]
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.0005)  # separate TCP segments, separate reads
            writer.close()

        await asyncio.gather(forward(), backward(), return_exceptions=True)

    def __enter__(self) -> SplittingRelay:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def relay(vllm_double: VllmDouble) -> Iterator[SplittingRelay]:
    assert vllm_double.port
    with SplittingRelay(vllm_double.port, seed=7) as splitting:
        yield splitting


@pytest.mark.parametrize(
    "reply",
    [
        "北京是中国的首都，上海是最大的城市。",
        "emoji 🙂 and 中文 mixed with English words, then a long tail " * 3,
    ],
)
def test_split_streams_reassemble_exactly(
    vllm_double: VllmDouble, relay: SplittingRelay, reply: str
) -> None:
    vllm_double.reply = reply
    vllm_double.keep_alive_s = 0.01
    vllm_double.ttft_s = 0.05  # with keep-alive comment lines while waiting
    endpoint = endpoint_for(vllm_double, base_url=f"http://127.0.0.1:{relay.port}/v1")
    gateway = fast_gateway()
    deltas: list[str] = []
    result = run(gateway, gateway.chat([endpoint], ask(stream=True), on_delta=deltas.append))
    assert result.text == reply
    assert "".join(deltas) == reply
    assert result.finish_reason == "stop"
    assert result.tokens_out > 0
