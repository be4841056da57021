"""A node type for benchmarks only: waits, as a node waiting on a model or an API would.

Loaded by the benchmark's Celery worker with ``--include bench.sleep_node`` and imported by
``bench/workflow_runs.py`` itself, so that publishing a graph that uses it validates.
"""

from __future__ import annotations

import asyncio

from workflows.nodes.base import Node, NodeCategory, NodeConfig, NodeContext, NodeResult
from workflows.nodes.registry import register


class BenchSleepConfig(NodeConfig):
    seconds: float = 0.0


@register
class BenchSleep(Node[BenchSleepConfig]):
    type_id = "bench_sleep"
    category = NodeCategory.PROCESSING
    title = "Sleep (benchmark)"
    description = "Waits the configured seconds without holding a thread's CPU."
    Config = BenchSleepConfig
    outputs = {"slept": "number"}

    async def run(self, context: NodeContext) -> NodeResult:
        await asyncio.sleep(self.config.seconds)
        return NodeResult(outputs={"slept": self.config.seconds})
