"""Node types that exist only for engine tests: they wait, fail on demand or crash."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register

ATTEMPTS: Counter[str] = Counter()


class SleepConfig(NodeConfig):
    seconds: float = 0.0


@register
class Sleep(Node[SleepConfig]):
    type_id = "test_sleep"
    category = NodeCategory.PROCESSING
    title = "Sleep (tests)"
    description = "Waits, as a node waiting on a model or an API would."
    Config = SleepConfig
    outputs = {"started": "number", "ended": "number"}

    async def run(self, context: NodeContext) -> NodeResult:
        started = time.monotonic()
        await asyncio.sleep(self.config.seconds)
        return NodeResult(outputs={"started": started, "ended": time.monotonic()})


class FlakyConfig(NodeConfig):
    key: str
    fail_times: int = 1
    crash: bool = False


@register
class Flaky(Node[FlakyConfig]):
    type_id = "test_flaky"
    category = NodeCategory.PROCESSING
    title = "Flaky (tests)"
    description = "Fails its first attempts, by result or by exception."
    Config = FlakyConfig
    outputs = {"attempt": "number"}

    async def run(self, context: NodeContext) -> NodeResult:
        ATTEMPTS[self.config.key] += 1
        attempt = ATTEMPTS[self.config.key]
        if attempt <= self.config.fail_times:
            if self.config.crash:
                raise RuntimeError(f"boom {attempt}")
            return NodeResult.failure(f"upstream said no ({attempt})")
        return NodeResult(outputs={"attempt": attempt})
