"""Webhook ingress: a Telegram connector's callback URL against a bare view, on this machine.

Starts the ASGI app as the run command does (uvicorn, its default number of web workers) on
a free loopback port with a production-like environment, on the bench database and a Redis
broker, creates a Telegram connector bound to a published message workflow, then drives

- ``POST /connectors/<id>/events`` with distinct, valid Telegram updates (a unique update_id
  per request; body and headers as Telegram sends them, the secret header included): verify,
  store one InboundEvent, enqueue its processing on commit;
- ``GET /healthz`` (a tiny JSON answer, no database, no broker), the bare view;
- the same update over and over (a redelivery: answered 200 and dropped; ``--duplicates``);

with N keep-alive connections each for a fixed time, and prints one Markdown table (answers/s,
p50/p99 answer time, errors, the rows actually stored, the ratio ingress/bare). Progress goes
to stderr. No Celery worker runs: the queued tasks wait in Redis and are purged at the end.
See bench/README.md.

    .venv/bin/python bench/connector_ingress.py [--duration 10] [--concurrency 50 200 500]
                                                [--server uvicorn|gunicorn]

``--server gunicorn`` runs the same load on the production layout's WSGI server instead.

Ctrl-C or SIGTERM stops the server the script started.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import math
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common
from bench.common import (
    DATABASE_URL,
    REPO,
    BenchError,
    log,
    log_tracebacks,
    percentile_ms,
    production_env,
    run_step,
)
from bench.http_servers import (
    SERVERS,
    free_port,
    machine_busy_cpu_s,
    machine_lines,
    process_tree_cpu_s,
    running_server,
    version,
)
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble

HOST = "127.0.0.1"
# Databases 11-14 belong to the other benchmarks; this one is flushed at start and end.
REDIS_URL = "redis://127.0.0.1:6379/10"
QUEUE = "runs"  # where connectors.event_process goes (CELERY_TASK_DEFAULT_QUEUE)
USERNAME = "bench-ingress"
# The run command's default with Redis configured (scripts/run.sh, WEB_WORKERS).
RUN_COMMAND_WEB_WORKERS = 2
UPDATE_FIXTURE = REPO / "tests/connectors/telegram/fixtures/private_text.json"
# Feishu wants its answer within 3 s (docs/connectors.md); answers slower than that are
# counted apart.
SLOW_ANSWER_S = 3.0
# Each phase posts update ids from its own block, so the stored rows can be told apart.
ID_BLOCK = 10_000_000
SETTLE_S = 1.0
# Set by Ctrl-C or SIGTERM: every loop stops at its next request, then the server is stopped.
STOP = threading.Event()
SERVER_BY_NAME = {server.name: server for server in SERVERS}


# --- Requests --------------------------------------------------------------------------


@dataclass
class Updates:
    """Distinct Telegram updates (a private text message each), as Telegram POSTs them."""

    secret: str
    template: dict[str, Any]
    next_id: int

    def request(self) -> tuple[int, bytes, dict[str, str]]:
        update_id = self.next_id
        self.next_id += 1
        update = copy.deepcopy(self.template)
        update["update_id"] = update_id
        update["message"]["message_id"] = update_id % ID_BLOCK + 1
        update["message"]["date"] = int(time.time())
        update["message"]["text"] = f"ingress benchmark message {update_id}"
        body, headers = TelegramDouble.webhook_request(update, self.secret)
        return update_id, body, headers


@dataclass(frozen=True)
class Target:
    """What one phase sends: a method, a URL and a way to make each request."""

    endpoint: str  # as the table shows it
    method: str
    url: str
    make: Callable[[], tuple[int | None, bytes | None, dict[str, str]]]


@dataclass
class PhaseResult:
    latencies: list[float] = field(default_factory=list)  # of 200 answers, sorted at the end
    failures: Counter[str] = field(default_factory=Counter)  # non-200 statuses, client errors
    accepted_ids: set[int] = field(default_factory=set)  # update ids answered 200
    failed_ids: set[int] = field(default_factory=set)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def slow(self) -> int:
        return sum(1 for latency in self.latencies if latency > SLOW_ANSWER_S)


async def _drive(
    target: Target, concurrency: int, duration_s: float, timeout_s: float
) -> PhaseResult:
    import aiohttp

    result = PhaseResult()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def one_connection() -> None:
            while not STOP.is_set() and time.perf_counter() < deadline:
                update_id, body, headers = target.make()
                sent = time.perf_counter()
                try:
                    async with session.request(
                        target.method,
                        target.url,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                    ) as response:
                        await response.read()
                        outcome = str(response.status)
                except TimeoutError:
                    outcome = "timeout"
                except aiohttp.ClientError as exc:
                    outcome = type(exc).__name__
                if outcome == "200":
                    result.latencies.append(time.perf_counter() - sent)
                    if update_id is not None:
                        result.accepted_ids.add(update_id)
                else:
                    result.failures[outcome] += 1
                    if update_id is not None:
                        result.failed_ids.add(update_id)

        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


def drive(target: Target, concurrency: int, duration_s: float, timeout_s: float) -> PhaseResult:
    cpu_before = time.process_time()
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_drive(target, concurrency, duration_s, timeout_s))
    if STOP.is_set():
        raise KeyboardInterrupt
    result.latencies.sort()
    result.client_cpu_s = time.process_time() - cpu_before
    return result


# --- Django side (this process) --------------------------------------------------------


def prepare(var_dir: Path) -> dict[str, str]:
    """The server's environment, on the bench database, created and migrated if needed."""
    env = production_env(var_dir, redis_url=REDIS_URL)
    # The connector's credentials are encrypted at rest: a throwaway key, like the random
    # secret key (the connector is deleted at the end).
    env["SECRETS_KEYS"] = f"bench:{base64.b64encode(os.urandom(32)).decode()}"
    log("creating the database if missing, migrating")
    out = run_step([sys.executable, "scripts/create_database.py", DATABASE_URL], env, 30)
    if out.strip():
        log(out.strip())
    run_step([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    return env


def setup_django(env: dict[str, str]) -> Any:
    return common.setup_django(env, USERNAME)


def message_graph() -> dict[str, Any]:
    """message -> reply "re: <text>" -> end (never run here: no worker)."""

    def node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
        return {"id": node_id, "type": type_, "type_version": 1, "config": config}

    def edge(source: str, target: str) -> dict[str, Any]:
        return {
            "id": f"{source}-{target}",
            "source": source,
            "source_handle": "out",
            "target": target,
            "target_handle": "in",
        }

    return {
        "format_version": 1,
        "nodes": [
            node("start", "message_trigger", command_prefix=""),
            node("answer", "reply", text="re: {{ nodes.start.text }}"),
            node("done", "end", output="{{ nodes.answer.text }}"),
        ],
        "edges": [edge("start", "answer"), edge("answer", "done")],
        "variables": {},
    }


def telegram_connector(user: Any, secret: str) -> int:
    """A Telegram connector with a webhook secret, bound to a new published workflow."""
    from django.db import connection

    from connectors import services as connector_services
    from workflows import services

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workflow = services.workflow_create(actor=user, name=f"bench ingress {stamp}")
    workflow = services.workflow_draft_save(
        workflow=workflow, graph=message_graph(), base_revision=workflow.draft_revision
    )
    services.workflow_publish(workflow=workflow, actor=user, changelog="benchmark")
    connector = connector_services.connector_create(
        actor=user,
        data={
            "name": f"bench-ingress-{stamp}-{secrets.token_hex(3)}",
            "platform": "telegram",
            "workflow": workflow,
            "config": {
                "bot_username": DEFAULT_USERNAME,
                "bot_id": int(DEFAULT_TOKEN.split(":")[0]),
            },
            "secrets": {"bot_token": DEFAULT_TOKEN, "webhook_secret": secret},
        },
    )
    connection.close()
    return int(connector.pk)


@dataclass(frozen=True)
class Stored:
    rows: int  # rows of the phase's update ids
    lost: int  # answered 200 but not stored
    unanswered: int  # stored although the client saw no 200 (a timeout, a 5xx after commit)
    duplicates: int  # update ids stored more than once


def stored_check(connector_id: int, result: PhaseResult, first_id: int) -> Stored:
    from django.db import connection
    from django.db.models import Count

    from connectors.models import InboundEvent

    ids = [
        int(event_id)
        for event_id in InboundEvent.objects.filter(connector_id=connector_id).values_list(
            "event_id", flat=True
        )
        if first_id <= int(event_id) < first_id + ID_BLOCK
    ]
    stored = set(ids)
    duplicates = (
        InboundEvent.objects.filter(connector_id=connector_id)
        .values("dedupe_key")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    connection.close()
    return Stored(
        rows=len(ids),
        lost=len(result.accepted_ids - stored),
        unanswered=len(stored - result.accepted_ids),
        duplicates=duplicates + len(ids) - len(stored),
    )


def rows_of(connector_id: int) -> int:
    from django.db import connection

    from connectors.models import InboundEvent

    count = InboundEvent.objects.filter(connector_id=connector_id).count()
    connection.close()
    return count


def connector_delete(connector_id: int) -> None:
    from django.db import connection

    from connectors import services as connector_services
    from connectors.models import Connector

    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is not None:
        connector_services.connector_delete(connector=connector)
    connection.close()


def queued_tasks() -> int:
    import redis

    return int(redis.Redis.from_url(REDIS_URL).llen(QUEUE))


def purge_queue() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


# --- Phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    concurrency: int
    endpoint: str
    result: PhaseResult
    server_cpu_s: float
    machine_cpu_s: float
    stored: Stored | None = None  # ingress rows
    new_rows: int | None = None  # duplicate rows
    kind: str = "ingress"  # ingress, bare, duplicate

    @property
    def other_cores(self) -> float:
        other = self.machine_cpu_s - self.server_cpu_s - self.result.client_cpu_s
        return max(0.0, other) / self.result.elapsed_s if self.result.elapsed_s else math.nan


def measure(
    proc: subprocess.Popen[bytes],
    target: Target,
    concurrency: int,
    *,
    duration_s: float,
    timeout_s: float,
) -> tuple[PhaseResult, float, float]:
    cpu_before, busy_before = process_tree_cpu_s(proc.pid), machine_busy_cpu_s()
    result = drive(target, concurrency, duration_s, timeout_s)
    busy = machine_busy_cpu_s() - busy_before
    cpu = process_tree_cpu_s(proc.pid) - cpu_before
    log(
        f"c={concurrency:<4} {target.endpoint:28} {result.rate:8,.1f} answers/s  "
        f"p50 {fmt_ms(percentile_ms(result.latencies, 0.5))} ms  "
        f"p99 {fmt_ms(percentile_ms(result.latencies, 0.99))} ms  errors {result.errors}"
        + (f" {dict(result.failures)}" if result.failures else "")
    )
    time.sleep(SETTLE_S)  # requests the client gave up on may still be finishing
    return result, cpu, busy


def post_once(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def phases(
    args: argparse.Namespace,
    proc: subprocess.Popen[bytes],
    port: int,
    connector_id: int,
    secret: str,
) -> list[Row]:
    template: dict[str, Any] = json.loads(UPDATE_FIXTURE.read_text())
    events_url = f"http://{HOST}:{port}/connectors/{connector_id}/events"
    bare = Target(
        "`/healthz` (bare view)", "GET", f"http://{HOST}:{port}/healthz", lambda: (None, None, {})
    )
    block = iter(range(1, 100))

    def updates() -> Updates:
        return Updates(secret=secret, template=template, next_id=next(block) * ID_BLOCK)

    def ingress_target() -> tuple[Target, int]:
        fresh = updates()
        label = "`POST /connectors/<id>/events`"
        return Target(label, "POST", events_url, fresh.request), fresh.next_id

    warm_concurrency = min(args.concurrency)
    log(f"warm-up: {args.warmup:g} s per endpoint at {warm_concurrency} connections")
    for target in (ingress_target()[0], bare):
        warm, _cpu, _busy = measure(
            proc, target, warm_concurrency, duration_s=args.warmup, timeout_s=args.timeout
        )
        if not warm.latencies:
            raise BenchError(f"{target.endpoint}: no request answered 200 in the warm-up")

    timing = {"duration_s": args.duration, "timeout_s": args.timeout}
    rows: list[Row] = []
    for concurrency in args.concurrency:
        target, first_id = ingress_target()
        result, cpu, busy = measure(proc, target, concurrency, **timing)
        stored = stored_check(connector_id, result, first_id)
        rows.append(Row(concurrency, target.endpoint, result, cpu, busy, stored=stored))
        result, cpu, busy = measure(proc, bare, concurrency, **timing)
        rows.append(Row(concurrency, bare.endpoint, result, cpu, busy, kind="bare"))

    if args.duplicates:
        update_id, body, headers = updates().request()
        status = post_once(events_url, body, headers)
        if status != 200:
            raise BenchError(f"the first delivery of update {update_id} was answered {status}")
        before = rows_of(connector_id)
        same = Target(
            "same update again (redelivery)", "POST", events_url, lambda: (None, body, headers)
        )
        result, cpu, busy = measure(proc, same, args.duplicates, **timing)
        rows.append(
            Row(
                args.duplicates,
                same.endpoint,
                result,
                cpu,
                busy,
                new_rows=rows_of(connector_id) - before,
                kind="duplicate",
            )
        )
    return rows


# --- Report ----------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def stored_cell(row: Row) -> str:
    if row.stored is not None:
        return f"{row.stored.rows:,}"
    if row.new_rows is not None:
        return f"{row.new_rows:+,}"
    return "-"


def ratio_cell(row: Row, rows: Sequence[Row]) -> str:
    if row.kind == "bare":
        return "1"
    bare = next((r for r in rows if r.kind == "bare" and r.concurrency == row.concurrency), None)
    if bare is None or not bare.result.rate:
        return "n/a"
    return f"{row.result.rate / bare.result.rate:.2f}"


def report(
    rows: Sequence[Row],
    *,
    args: argparse.Namespace,
    started: datetime,
    load_before: str,
    command: str,
    queued: int,
    stored_total: int,
    server_log: str,
) -> str:
    server = SERVER_BY_NAME[args.server]
    lines = [
        "| Connections | Endpoint | Answers/s | p50 ms | p99 ms | Errors | Over 3 s "
        "| Rows stored | Server CPU ms/answer | Client cores | Other cores | Ratio to bare |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        result = row.result
        answers = len(result.latencies)
        cpu = row.server_cpu_s * 1000 / answers if answers else math.nan
        lines.append(
            f"| {row.concurrency} | {row.endpoint} | {result.rate:,.0f} "
            f"| {fmt_ms(percentile_ms(result.latencies, 0.5))} "
            f"| {fmt_ms(percentile_ms(result.latencies, 0.99))} | {result.errors} "
            f"| {result.slow} | {stored_cell(row)} | {fmt_ms(cpu)} "
            f"| {result.client_cpu_s / result.elapsed_s:.2f} | {row.other_cores:.2f} "
            f"| {ratio_cell(row, rows)} |"
        )
    lines += ["", f"- Date: {started:%Y-%m-%d %H:%M} UTC", *machine_lines()]
    lines += [
        f"- Load average before the run (1, 5, 15 min): {load_before}",
        f"- Command: `{command}` (in {REPO})",
        f"- Server: `{shlex.join(server.argv('PORT', args.workers))}` ("
        + (
            "the run command's web server"
            if server.name == "uvicorn"
            else "the WSGI server of the production layout, not the run command's"
        )
        + f"; the run command starts {RUN_COMMAND_WEB_WORKERS} workers when Redis is set); "
        "settings.base, DEBUG off, LOG_LEVEL=WARNING, PostgreSQL `assistant_studio_bench` "
        f"with the psycopg pool (DB_POOL=true, 10 connections per process), Redis "
        f"`{REDIS_URL}` as cache and broker. Versions: Django {version('django')}, uvicorn "
        f"{version('uvicorn')}, asgiref {version('asgiref')}, psycopg {version('psycopg')}.",
        "- No Celery worker runs: ingress (verify the secret header, parse, store one "
        "InboundEvent, enqueue `connectors.event_process` on commit, answer) is what is "
        f"measured. At the end {queued:,} tasks were waiting in the `{QUEUE}` queue for "
        f"{stored_total:,} stored events; the Redis database was then flushed.",
        f"- Load: aiohttp {version('aiohttp')} client in the benchmark process, on the same "
        f"cores; {args.duration:g} s per row after a {args.warmup:g} s warm-up per endpoint, "
        f"keep-alive, {args.timeout:g} s request timeout. Ingress rows post distinct updates "
        "(the captured `private_text` fixture with a fresh update_id, message_id and text), "
        "body and headers as `TelegramDouble.webhook_request` builds them (JSON, "
        "`X-Telegram-Bot-Api-Secret-Token`)"
        + (
            f"; the redelivery row posts one already-stored update from {args.duplicates} "
            "connections."
            if args.duplicates
            else "."
        ),
        "- Columns: p50/p99 over the 200 answers; errors are other statuses, timeouts and "
        "socket errors; over 3 s counts 200 answers slower than Feishu's limit. Rows stored: "
        "InboundEvent rows of the row's update ids (redelivery: rows added). Server CPU: the "
        "server's processes' CPU per 200 answer; client cores: the load generator's CPU; other "
        "cores: the rest of the machine's busy CPU (PostgreSQL, Redis, anything else).",
    ]
    checks = []
    for row in rows:
        if row.result.failures:
            checks.append(f"c={row.concurrency} {row.endpoint}: {dict(row.result.failures)}")
        if row.stored is not None and (
            row.stored.lost or row.stored.unanswered or row.stored.duplicates
        ):
            checks.append(
                f"c={row.concurrency} ingress: {row.stored.lost} answered 200 but not stored, "
                f"{row.stored.unanswered} stored without a 200, {row.stored.duplicates} "
                "stored twice"
            )
        if row.new_rows:
            checks.append(f"redelivery: {row.new_rows} rows added (expected 0)")
    lines.append(
        "- Checks: every update answered 200 was stored exactly once, no row without a 200 "
        "answer, no row from redeliveries."
        if not checks
        else "- Checks failed: " + "; ".join(checks) + "."
    )
    if server_log:
        lines.append(f"- Server log: {server_log}")
    return "\n".join(lines)


# --- Main ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Our own handler also keeps asyncio.Runner from installing its SIGINT handler.
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def bench_connector(user: Any, secret: str, keep: bool) -> Iterator[int]:
    connector_id = telegram_connector(user, secret)
    log(f"Telegram connector {connector_id} created")
    try:
        yield connector_id
    finally:
        if not keep:
            connector_delete(connector_id)
            log(f"connector {connector_id} and its events deleted")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument(
        "--duplicates",
        type=int,
        default=50,
        help="connections of the redelivery row (0: no such row)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=RUN_COMMAND_WEB_WORKERS,
        help="server worker processes (default: the run command's)",
    )
    parser.add_argument(
        "--server",
        choices=sorted(SERVER_BY_NAME),
        default="uvicorn",
        help="uvicorn: the run command's ASGI server (default); gunicorn: sync WSGI workers",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the connector and its events (its credentials use a throwaway key)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 0.5 <= args.warmup <= 30:
        parser.error("--duration must be within 1-120 s and --warmup within 0.5-30 s")
    if any(not 1 <= c <= 2000 for c in args.concurrency) or not 0 <= args.duplicates <= 2000:
        parser.error("--concurrency and --duplicates must be within 1-2000")
    if not 1 <= args.workers <= 16 or not 1 <= args.timeout <= 120:
        parser.error("--workers must be within 1-16 and --timeout within 1-120 s")

    server = SERVER_BY_NAME[args.server]
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    command = shlex.join([".venv/bin/python", "bench/connector_ingress.py", *sys.argv[1:]])
    secret = secrets.token_urlsafe(24)  # Telegram allows A-Z, a-z, 0-9, _ and -
    queued = stored_total = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "prometheus").mkdir()
            env = prepare(var_dir)
            user = setup_django(env)
            purge_queue()
            try:
                with bench_connector(user, secret, args.keep) as connector_id:
                    port = free_port()
                    with running_server(server, port, args.workers, env, var_dir) as proc:
                        rows = phases(args, proc, port, connector_id, secret)
                    queued, stored_total = queued_tasks(), rows_of(connector_id)
            finally:
                purge_queue()
                server_log = log_tracebacks(var_dir / f"{server.name}.log")
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; server stopped")
        return 130
    print(
        report(
            rows,
            args=args,
            started=started,
            load_before=load_before,
            command=command,
            queued=queued,
            stored_total=stored_total,
            server_log=server_log,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
