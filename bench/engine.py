"""Engine overhead: microseconds per node for graphs without I/O.

Runs a 10-node chain (trigger, 8 processing nodes, end) many times in one process and reports
the time per run and per node, sequentially and with many runs in flight at once. Two chains:
no-op nodes (the engine's own cost: scheduling, trace events, outputs) and template nodes
(plus a small sandboxed Jinja2 render each).

    .venv/bin/python bench/engine.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings.test")

import itertools

from workflows.engine.executor import CompiledWorkflow, TraceEvent
from workflows.nodes.base import (
    Node,
    NodeCategory,
    NodeConfig,
    NodeContext,
    NodeResult,
)
from workflows.nodes.registry import register


class NoopConfig(NodeConfig):
    pass


@register
class Noop(Node[NoopConfig]):
    type_id = "bench_noop"
    category = NodeCategory.PROCESSING
    title = "No-op (benchmark)"
    description = "Returns at once."
    Config = NoopConfig
    outputs = {"ok": "boolean"}

    async def run(self, context: NodeContext) -> NodeResult:
        return NodeResult(outputs={"ok": True})


def chain(kind: str, middle: int = 8) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "manual_trigger"}]
    for index in range(middle):
        config = {"template": "{{ trigger.text }}-" + str(index)} if kind == "template" else {}
        nodes.append(
            {
                "id": f"n{index}",
                "type": "bench_noop" if kind == "noop" else "template",
                "config": config,
            }
        )
    nodes.append({"id": "done", "type": "end", "config": {"output": "ok"}})
    ids = [node["id"] for node in nodes]
    pairs = enumerate(itertools.pairwise(ids))
    edges = [{"id": f"e{i}", "source": a, "target": b} for i, (a, b) in pairs]
    return {"format_version": 1, "nodes": nodes, "edges": edges}


async def measure(workflow: CompiledWorkflow, runs: int, in_flight: int) -> float:
    events: list[TraceEvent] = []

    async def one() -> None:
        await workflow.execute(trigger={"text": "hi"}, sink=events.append)

    started = time.perf_counter()
    for offset in range(0, runs, in_flight):
        await asyncio.gather(*(one() for _ in range(min(in_flight, runs - offset))))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    import django

    django.setup()
    import workflows.nodes  # noqa: F401  (registers the built-in types)

    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Command: .venv/bin/python bench/engine.py --runs {args.runs}\n")
    print("| chain (10 nodes) | runs in flight | runs/s | µs per run | µs per node |")
    print("|---|--:|--:|--:|--:|")
    for kind in ("noop", "template"):
        workflow = CompiledWorkflow(chain(kind))
        asyncio.run(measure(workflow, 100, 1))  # warm-up
        for in_flight in (1, 64):
            elapsed = asyncio.run(measure(workflow, args.runs, in_flight))
            per_run = elapsed / args.runs * 1e6
            print(
                f"| {kind} | {in_flight} | {args.runs / elapsed:,.0f} | {per_run:,.0f} | "
                f"{per_run / 10:,.1f} |"
            )


if __name__ == "__main__":
    main()
