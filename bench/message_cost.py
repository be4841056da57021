"""What one chat message costs the product, step by step: SQL statements and CPU time.

Scenario 2 of ``bench/end_to_end.py`` is bound by the runs workers' CPU. This script takes one
Telegram message of the echo workflow through the same services the web process and the
workers call, in one thread and in order, and measures each step on its own:

    receive          the callback URL's service (verify, parse, store the event)
    event_process    the connectors.event_process task (claim, conversation, run row)
    run_execute      executing the run (claim, execute, trace, replies), in the same task
    replies_deliver  turn the run's replies into deliveries, on the same thread
    deliveries_flush send them to the Telegram double, ditto

It patches only the hand-over between steps (the task queue) so that each step runs when the
script says, and makes the connector code believe it is on a worker's thread (the answer
leaves from there, as in production). PostgreSQL and Redis are the real ones; Telegram is
the protocol double, in its own thread (not counted: CPU is this thread's own).

    .venv/bin/python bench/message_cost.py                 # 300 messages, the table
    .venv/bin/python bench/message_cost.py --sql           # and the SQL of one message
    .venv/bin/python bench/message_cost.py --profile 25    # and a cProfile of every step

Statements per step are exact and deterministic; CPU milliseconds vary a little with the
machine. The figures before and after each fix are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import functools
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import log, prepare_database, production_env, setup_django
from bench.http_servers import machine_lines
from tests.doubles.telegram_server import (
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    SECRET_HEADER,
    TelegramDouble,
)

REDIS_URL = "redis://127.0.0.1:6379/8"  # 9-14 belong to the other benchmarks
USERNAME = "bench-cost"
UPDATE_FIXTURE = Path(__file__).resolve().parent.parent / (
    "tests/connectors/telegram/fixtures/private_text.json"
)
STEPS = ("receive", "event_process", "run_execute", "replies_deliver", "deliveries_flush")
TASK_STEPS = {
    "connectors.run_replies_deliver": "replies_deliver",
    "connectors.deliveries_flush": "deliveries_flush",
}


class Step:
    """Accumulates one step's statements, CPU and wall time over the measured messages."""

    def __init__(self) -> None:
        self.statements = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.calls = 0
        self.sql: list[str] = []


def update_for(number: int) -> dict[str, Any]:
    update: dict[str, Any] = json.loads(UPDATE_FIXTURE.read_text(encoding="utf-8"))
    update["update_id"] = 500_000_000 + number
    message = update["message"]
    message["message_id"] = number
    # One chat per ten messages: conversations both new and continued, as under load.
    message["chat"]["id"] = message["from"]["id"] = 7_000_000 + number // 10
    message["text"] = f"hello number {number}"
    return update


def setup(env: dict[str, str], telegram: TelegramDouble, secret: str) -> int:
    user = setup_django(env, USERNAME)
    from bench.end_to_end import echo_graph, published, telegram_connector
    from connectors.models import Connector

    Connector.objects.filter(name__startswith=f"bench-e2e-{DEFAULT_USERNAME}").filter(
        workflow__name__startswith="bench cost echo"
    ).delete()
    workflow = published(user, f"bench cost echo {secrets.token_hex(3)}", echo_graph())
    return telegram_connector(
        user,
        workflow,
        api_base=telegram.url,
        token=DEFAULT_TOKEN,
        username=DEFAULT_USERNAME,
        secret=secret,
    )


class Pipeline:
    """Runs each step's follow-up when the driver says: the hand-overs (the task queue and
    "on this worker thread") are patched to keep it instead."""

    def __init__(self, args: argparse.Namespace) -> None:
        from connectors import services as connectors
        from workflows import services as workflows

        self.args = args
        self.events: list[int] = []
        self.runs: list[str] = []
        self.here: list[tuple[str, Callable[[], object]]] = []
        connectors._enqueue_event = self.events.append  # type: ignore[assignment]
        workflows._run_dispatch = self._keep_run
        connectors.in_worker_task = lambda: True
        connectors._here_or_queued = self._keep  # type: ignore[assignment]
        self.steps: dict[str, Step] = defaultdict(Step)
        self.profiles = {name: cProfile.Profile(time.thread_time) for name in STEPS}

    def _keep_run(self, run_id: Any, *, here: bool) -> None:
        self.runs.append(str(run_id))

    def _keep(self, call: Callable[[], object], task: Any, *_args: Any) -> None:
        self.here.append((TASK_STEPS[task.name], call))

    def timed(self, name: str, call: Callable[[], object], measured: bool) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        step = self.steps[name]
        profile = self.profiles[name] if (self.args.profile and measured) else None
        connection.queries_log.clear()  # the log keeps 9,000: indexes past that would be off
        with CaptureQueriesContext(connection) as queries:
            cpu, wall = time.thread_time(), time.perf_counter()
            if profile is not None:
                profile.runcall(call)
            else:
                call()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if measured:
            step.statements += len(queries.captured_queries)
            step.cpu_s += cpu
            step.wall_s += wall
            step.calls += 1
            if not step.sql:
                step.sql = [query["sql"] for query in queries.captured_queries]

    def message(self, number: int, connector_id: int, secret: str) -> None:
        """One update through every step, in the order the product takes them."""
        from connectors import services as connectors
        from connectors.base import InboundRequest
        from workflows import services as workflows

        measured = number >= self.args.warmup
        request = InboundRequest(
            body=json.dumps(update_for(number)).encode(),
            headers={"Content-Type": "application/json", SECRET_HEADER: secret},
            remote_addr="127.0.0.1",
            received_at=time.time(),
        )
        self.timed(
            "receive",
            lambda: connectors.event_receive(connector_id=connector_id, request=request),
            measured,
        )
        while self.events or self.runs or self.here:
            if self.events:
                event = functools.partial(connectors.event_process, event_id=self.events.pop(0))
                self.timed("event_process", event, measured)
            elif self.runs:
                run = functools.partial(workflows.run_execute, run_id=self.runs.pop(0))
                self.timed("run_execute", run, measured)
            else:
                self.timed(*self.here.pop(0), measured)

    def print_profiles(self) -> None:
        for name in STEPS:
            print(f"\n## {name}: cProfile, CPU time of this thread, by cumulative time\n")
            pstats.Stats(self.profiles[name]).sort_stats("cumulative").print_stats(
                self.args.profile
            )


def measure(args: argparse.Namespace, connector_id: int, secret: str) -> dict[str, Step]:
    pipeline = Pipeline(args)
    for number in range(args.warmup + args.messages):
        pipeline.message(number, connector_id, secret)
    if args.profile:
        pipeline.print_profiles()
    return pipeline.steps


def check(connector_id: int, messages: int, telegram: TelegramDouble) -> str:
    from connectors.models import InboundEvent
    from workflows.models import Run

    events = InboundEvent.objects.filter(connector_id=connector_id)
    replied = events.filter(status=InboundEvent.Status.REPLIED).count()
    succeeded = Run.objects.filter(
        inbound_events__connector_id=connector_id, status=Run.Status.SUCCEEDED
    ).count()
    sent = len(telegram.calls_to("sendMessage"))
    if not replied == succeeded == sent == messages:
        raise SystemExit(
            f"expected {messages} replied events, succeeded runs and sent messages; "
            f"got {replied}, {succeeded}, {sent}"
        )
    methods = sorted({call.method for call in telegram.calls})
    per_message = ", ".join(
        f"{method} {len(telegram.calls_to(method)) / messages:.2f}" for method in methods
    )
    return (
        f"{messages} of {messages} events replied, runs succeeded, answers sent; "
        f"Bot API calls per message: {per_message}"
    )


def report(args: argparse.Namespace, steps: dict[str, Step], checked: str) -> None:
    print(f"# One echo message through the product ({args.messages} messages measured)\n")
    for line in machine_lines():
        print(line)
    print(f"Command: .venv/bin/python bench/message_cost.py --messages {args.messages}")
    print(f"Check: {checked}\n")
    print("| Step | SQL statements | CPU ms | Wall ms |")
    print("|---|---:|---:|---:|")
    totals = [0.0, 0.0, 0.0]
    for name in STEPS:
        step = steps[name]
        per = max(step.calls, 1)
        row = (step.statements / per, step.cpu_s * 1000 / per, step.wall_s * 1000 / per)
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"| {name} | {row[0]:.1f} | {row[1]:.2f} | {row[2]:.2f} |")
    print(f"| **per message** | **{totals[0]:.1f}** | **{totals[1]:.2f}** | **{totals[2]:.2f}** |")
    if args.sql:
        for name in STEPS:
            print(f"\n## {name}: the statements of one message\n")
            for number, sql in enumerate(steps[name].sql, 1):
                print(f"{number:>3}. {sql[: args.sql_width]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="measured messages")
    parser.add_argument("--warmup", type=int, default=30, help="messages before measuring")
    parser.add_argument("--sql", action="store_true", help="print one message's statements")
    parser.add_argument("--sql-width", type=int, default=160, help="characters per statement")
    parser.add_argument("--profile", type=int, default=0, help="cProfile rows per step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as var:
        env = production_env(Path(var), redis_url=REDIS_URL)
        (Path(var) / "prometheus").mkdir()
        env["SECRETS_KEYS"] = f"bench:{base64.b64encode(os.urandom(32)).decode()}"
        env["OUTBOUND_HTTP_ALLOWED_HOSTS"] = "127.0.0.1/32"
        prepare_database(env)
        secret = secrets.token_urlsafe(24)
        telegram = TelegramDouble().start()
        try:
            connector_id = setup(env, telegram, secret)
            log(f"{args.warmup} warm-up and {args.messages} measured messages")
            steps = measure(args, connector_id, secret)
            checked = check(connector_id, args.warmup + args.messages, telegram)
        finally:
            telegram.stop()
    report(args, steps, checked)


if __name__ == "__main__":
    main()
