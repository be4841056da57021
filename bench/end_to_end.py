"""End to end: the whole product on loopback, five scenarios, one table.

Starts, on this machine: a Chroma server, two vLLM protocol doubles in their own processes
(a 300 ms / 30 tokens-per-second model and a 1 s model), a Telegram Bot API double (a thread
of this process), the ASGI server as the run command starts it (uvicorn, 2 workers,
``settings.base``, DEBUG off) and, after scenario 1, the run command's Celery worker
(``-Q runs -P threads -c 64``). PostgreSQL and Redis are the machine's (the database
``assistant_studio_bench``, Redis database 9, flushed at the start and the end). Then:

1. webhook ingress: distinct Telegram updates with the secret header at 50, 200 and 500
   connections, against ``/healthz`` on the same server (no worker yet: ingress only);
2. echo end to end: closed-loop senders (60, then 200), each a Telegram chat that posts a
   message and waits for the bot's answer at the Telegram double (message trigger ->
   template -> reply); every accepted event must have a succeeded run with its trace;
3. chat Q&A: web chat visitors over WebSockets on the demo Q&A workflow (retrieval over a
   10,000-chunk knowledge base, an LLM at 300 ms to the first token and 30 tokens/s,
   streamed), in steps of more visitors until p99 time to the first streamed token passes
   800 ms;
4. LLM fan-out: 256 conversations at once against the 1 s model, through the product (256
   Telegram chats), and 256 calls of the bare ``openai`` client as the ceiling;
5. soak: updates at half of scenario 2's rate (60 senders) for ``--soak-minutes``; memory of
   every process at start and end, errors, and every accepted event's run finished.

Prints one Markdown table (stdout); progress on stderr. Every process it started is stopped
at the end, on error and on Ctrl-C. See docs/benchmarks.md, "End to end".

    .venv/bin/python bench/end_to_end.py                     # about 45 minutes
    .venv/bin/python bench/end_to_end.py --soak-minutes 2    # about 17 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import functools
import itertools
import json
import math
import os
import random
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common, connector_ingress
from bench.common import (
    REPO,
    BenchError,
    log,
    log_tracebacks,
    percentile_ms,
    production_env,
)
from bench.http_servers import (
    SERVERS,
    free_port,
    machine_lines,
    running_server,
    stop_process_group,
    version,
)
from bench.knowledge import TextGen, chroma_server, synthetic_base
from bench.llm_gateway import DoubleProcess, direct_client, wave
from tests.doubles.telegram_server import DEFAULT_TOKEN, DEFAULT_USERNAME, TelegramDouble

HOST = "127.0.0.1"
# Databases 10-14 belong to the other benchmarks.
REDIS_URL = "redis://127.0.0.1:6379/9"
USERNAME = "bench-e2e"
WEB_WORKERS = 2  # scripts/run.sh with Redis set
RUNS_WORKER_THREADS = 64  # scripts/run.sh's RUNS_WORKER_THREADS
RUNS_WORKERS = min(os.cpu_count() or 1, 4)  # scripts/run.sh's RUNS_WORKERS
FANOUT_TOKEN = "6666666666:AAFanoutBenchBotKeyForTheSecondBot00"  # noqa: S105  (a double's)
FANOUT_USERNAME = "studio_fanout_bot"
UPDATE_FIXTURE = REPO / "tests/connectors/telegram/fixtures/private_text.json"
QA_WORKFLOW = REPO / "workflows/demo/knowledge_qa.yaml"
# Scenario 3's model: 300 ms to the first token, 30 tokens/s, a 30-token answer (~1.3 s).
QA_TTFT_S = 0.3
QA_TOKEN_DELAY_S = 1 / 30
QA_REPLY = " ".join(f"word{i}" for i in range(30))
TTFT_TARGET_S = 0.8  # the seeds' target for the first reply token (p99)
FANOUT_TTFT_S = 1.0
FANOUT_REPLY = "one two three four five six seven eight"
REPLY_TIMEOUT_S = 60.0
STOP = threading.Event()
# --worker-threads, --worker-processes
WORKERS = SimpleNamespace(threads=RUNS_WORKER_THREADS, processes=RUNS_WORKERS)


# --- The Telegram double, telling the load generator when the bot answers ------------------


class ReplyWaiter:
    """Futures for "the bot sent a message to chat N", resolved from the double's thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, asyncio.Future[float]] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            self._waiting.clear()

    def expect(self, chat_id: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[chat_id] = future
        return future

    def forget(self, chat_id: int) -> None:
        with self._lock:
            self._waiting.pop(chat_id, None)

    def sent(self, chat_id: int, at: float) -> None:
        with self._lock:
            future, loop = self._waiting.pop(chat_id, None), self._loop
        if future is not None and loop is not None:
            loop.call_soon_threadsafe(_resolve, future, at)


def _resolve(future: asyncio.Future[float], at: float) -> None:
    if not future.done():
        future.set_result(at)


class BenchTelegram(TelegramDouble):
    """The Telegram double, telling ``waiter`` when a sendMessage succeeded."""

    def __init__(self, waiter: ReplyWaiter) -> None:
        super().__init__({DEFAULT_TOKEN: DEFAULT_USERNAME, FANOUT_TOKEN: FANOUT_USERNAME})
        self.waiter = waiter
        self.sent_messages = 0

    def make_app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def notify(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read()  # cached: the handler reads it again
            response: web.StreamResponse = await handler(request)
            if response.status == 200 and request.path.lower().endswith("/sendmessage"):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    chat_id = int(json.loads(body)["chat_id"])
                    self.sent_messages += 1
                    self.waiter.sent(chat_id, time.perf_counter())
            return response

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[notify])
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        return app

    def trim(self) -> None:
        """Forget recorded calls and chats: a 30-minute soak would keep millions."""
        with self._lock:
            self.calls.clear()
            for bot in self._bots.values():
                bot.chats.clear()


# --- Stack -------------------------------------------------------------------------------


def node(node_id: str, type_: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "type_version": 1, "config": config}


def chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    edges = [
        {
            "id": f"{a['id']}-{b['id']}",
            "source": a["id"],
            "source_handle": "out",
            "target": b["id"],
            "target_handle": "in",
        }
        for a, b in itertools.pairwise(nodes)
    ]
    return {"format_version": 1, "nodes": list(nodes), "edges": edges, "variables": {}}


def echo_graph() -> dict[str, Any]:
    """Scenario 2: message -> template -> reply -> end (n8n's webhook + Set, with a reply)."""
    return chain(
        node("message", "message_trigger", command_prefix=""),
        node("shape", "template", template="echo: {{ nodes.message.text }}"),
        node("answer", "reply", text="{{ nodes.shape.text }}"),
        node("done", "end", output="{{ nodes.shape.text }}"),
    )


def fanout_graph(endpoint: str) -> dict[str, Any]:
    """Scenario 4: message -> llm (1 s model, not streamed) -> reply."""
    return chain(
        node("message", "message_trigger", command_prefix=""),
        node("ask", "llm", endpoints=[endpoint], prompt="{{ nodes.message.text }}", stream=False),
        node("answer", "reply", text="{{ nodes.ask.text }}"),
    )


def qa_graph(base_id: int, endpoint: str) -> dict[str, Any]:
    """Scenario 3: the demo Q&A workflow, on the bench's knowledge base and model, without
    the demo's per-user rate limit (the visitors here ask as fast as they are answered)."""
    document = yaml.safe_load(QA_WORKFLOW.read_text(encoding="utf-8"))
    graph: dict[str, Any] = document["graph"]
    graph["settings"]["rate_limit"]["enabled"] = False
    for spec in graph["nodes"]:
        if spec["type"] == "knowledge_retrieval":
            spec["config"]["knowledge_base_ids"] = [base_id]
        if spec["type"] == "llm":
            spec["config"]["endpoints"] = [endpoint]
    return graph


@dataclass
class Objects:
    echo_connector: int = 0
    fanout_connector: int = 0
    webchat_connector: int = 0
    secret: str = ""
    fanout_secret: str = ""
    chunks: int = 0


def setup_django(env: dict[str, str]) -> Any:
    return common.setup_django(env, USERNAME)


def published(user: Any, name: str, graph: dict[str, Any]) -> Any:
    from workflows import services

    workflow = services.workflow_create(actor=user, name=name)
    workflow = services.workflow_draft_save(
        workflow=workflow, graph=graph, base_revision=workflow.draft_revision
    )
    services.workflow_publish(workflow=workflow, actor=user, changelog="benchmark")
    return workflow


def model_endpoint(user: Any, name: str, double: DoubleProcess) -> str:
    from workflows import services
    from workflows.models import ModelEndpoint

    ModelEndpoint.objects.filter(name=name).delete()
    services.model_endpoint_create(
        actor=user,
        data={
            "name": name,
            "kind": "chat",
            "base_url": double.base_url,
            "model": double.model,
            "api_key": "",
            "timeout_s": 60.0,
            "max_concurrency": 256,
            "default_params": {},
            "enabled": True,
        },
    )
    return name


def telegram_connector(
    user: Any, workflow: Any, *, api_base: str, token: str, username: str, secret: str
) -> int:
    from connectors import services

    connector = services.connector_create(
        actor=user,
        data={
            "name": f"bench-e2e-{username}-{secrets.token_hex(3)}",
            "platform": "telegram",
            "workflow": workflow,
            "api_base_url": api_base,
            "config": {"bot_username": username, "bot_id": int(token.split(":", maxsplit=1)[0])},
            "secrets": {"bot_token": token, "webhook_secret": secret},
        },
    )
    return int(connector.pk)


def webchat_connector(user: Any, workflow: Any) -> int:
    from connectors import services

    connector = services.connector_create(
        actor=user,
        data={
            "name": f"bench-e2e-webchat-{secrets.token_hex(3)}",
            "platform": "webchat",
            "workflow": workflow,
            "config": {"title": "bench", "idle_timeout_s": 3600},
            "secrets": {},
        },
    )
    return int(connector.pk)


def build_objects(
    user: Any, telegram: BenchTelegram, qa: DoubleProcess, slow: DoubleProcess, chunks: int
) -> Objects:
    from django.db import connection

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    objects = Objects(secret=secrets.token_urlsafe(24), fanout_secret=secrets.token_urlsafe(24))
    log(f"knowledge base of {chunks:,} synthetic chunks")
    base, _load_s = synthetic_base(user, TextGen(random.Random(7)), chunks)
    objects.chunks = chunks
    qa_endpoint = model_endpoint(user, "bench-e2e-qa", qa)
    slow_endpoint = model_endpoint(user, "bench-e2e-slow", slow)
    echo = published(user, f"bench e2e echo {stamp}", echo_graph())
    fanout = published(user, f"bench e2e fan-out {stamp}", fanout_graph(slow_endpoint))
    qa_flow = published(user, f"bench e2e Q&A {stamp}", qa_graph(base.pk, qa_endpoint))
    objects.echo_connector = telegram_connector(
        user,
        echo,
        api_base=telegram.url,
        token=DEFAULT_TOKEN,
        username=DEFAULT_USERNAME,
        secret=objects.secret,
    )
    objects.fanout_connector = telegram_connector(
        user,
        fanout,
        api_base=telegram.url,
        token=FANOUT_TOKEN,
        username=FANOUT_USERNAME,
        secret=objects.fanout_secret,
    )
    objects.webchat_connector = webchat_connector(user, qa_flow)
    connection.close()
    return objects


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def worker_argv(number: int = 1) -> list[str]:
    """A runs worker as the run command starts it (scripts/run.sh)."""
    return [
        *(str(Path(sys.executable).with_name("celery")), "-A", "assistant_site", "worker"),
        *("-Q", "runs", "-P", "threads", "-c", str(WORKERS.threads)),
        *("-n", f"runs{number}@%h", "--loglevel", "INFO"),
    ]


@contextlib.contextmanager
def runs_workers(env: dict[str, str], log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    from assistant_site.celery import app

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for number in range(1, WORKERS.processes + 1):
            log(f"starting: {shlex.join(worker_argv(number))}")
            with (log_dir / f"worker{number}.log").open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        worker_argv(number),
                        cwd=REPO,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 90
        while len(app.control.ping(timeout=0.5) or []) < len(procs):
            if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
                raise BenchError("a runs worker did not start")
        yield procs
    finally:
        log("stopping the runs workers")
        for proc in procs:
            stop_process_group(proc)


# --- Process memory ------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)


def _is_helper(pid: int) -> bool:
    """multiprocessing's resource tracker, which uvicorn's supervisor also starts."""
    with contextlib.suppress(OSError):
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def memory_snapshot(processes: dict[str, int]) -> dict[str, float]:
    """RSS in MiB by process label (the web server's workers each on their own)."""
    snapshot: dict[str, float] = {}
    for label, pid in processes.items():
        snapshot[label] = rss_mib(pid)
        if label == "web (uvicorn)":
            workers = [child for child in children(pid) if not _is_helper(child)]
            for n, child in enumerate(workers, start=1):
                snapshot[f"web worker {n}"] = rss_mib(child)
    snapshot["bench process (load, Telegram double)"] = rss_mib(os.getpid())
    with contextlib.suppress(Exception):
        import redis

        info = redis.Redis.from_url(REDIS_URL).info("memory")
        snapshot["Redis (used_memory, whole server)"] = int(info["used_memory"]) / 2**20
    return snapshot


# --- Rows of the table ------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    load: str
    rate: str
    p50: str
    p99: str
    errors: str
    checks: str
    peers: str = ""


def ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def seconds_p(samples: Sequence[float], fraction: float) -> float:
    return percentile_ms(sorted(samples), fraction)


# --- Scenario 1: webhook ingress ---------------------------------------------------------


def scenario_ingress(
    args: argparse.Namespace, server: subprocess.Popen[bytes], port: int, objects: Objects
) -> list[Row]:
    log("scenario 1: webhook ingress (no worker)")
    options = argparse.Namespace(
        concurrency=args.ingress_connections,
        warmup=2.0,
        duration=args.ingress_seconds,
        timeout=30.0,
        duplicates=0,
    )
    rows = connector_ingress.phases(options, server, port, objects.echo_connector, objects.secret)
    table = []
    for row in rows:
        if row.kind != "ingress":
            continue
        bare = next(r for r in rows if r.kind == "bare" and r.concurrency == row.concurrency)
        result, stored = row.result, row.stored
        lost = (stored.lost + stored.duplicates) if stored else 0
        table.append(
            Row(
                "1 webhook ingress",
                f"{row.concurrency} connections",
                f"{result.rate:,.0f} accepted/s ({result.rate / bare.result.rate:.2f} of "
                f"the bare view's {bare.result.rate:,.0f}/s)",
                ms(percentile_ms(result.latencies, 0.5)),
                ms(percentile_ms(result.latencies, 0.99)),
                str(result.errors),
                f"{stored.rows if stored else 0:,} stored, {lost} lost or doubled",
            )
        )
    return table


# --- Telegram load: closed-loop senders and open-loop rates --------------------------------


@dataclass
class Turns:
    """What one load phase saw."""

    latencies: list[float] = field(default_factory=list)  # post -> bot's message, seconds
    in_window: int = 0  # answers that arrived inside the measured window
    failures: Counter[str] = field(default_factory=Counter)
    accepted: list[int] = field(default_factory=list)  # update ids answered 200
    window_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.in_window / self.window_s if self.window_s else 0.0

    @property
    def errors(self) -> int:
        return sum(self.failures.values())


class TelegramSender:
    """Posts Telegram updates to a connector and waits for the bot's answer in the chat."""

    def __init__(
        self, session: Any, url: str, secret: str, waiter: ReplyWaiter, first_id: int
    ) -> None:
        self.session, self.url, self.secret, self.waiter = session, url, secret, waiter
        self.template: dict[str, Any] = json.loads(UPDATE_FIXTURE.read_text())
        self.next_id = first_id

    def update(self, chat_id: int) -> tuple[int, bytes, dict[str, str]]:
        update_id = self.next_id
        self.next_id += 1
        update = copy.deepcopy(self.template)
        update["update_id"] = update_id
        message = update["message"]
        message["message_id"] = update_id % 1_000_000_000 + 1
        message["date"] = int(time.time())
        message["text"] = f"benchmark message {update_id}"
        message["chat"]["id"] = message["from"]["id"] = chat_id
        body, headers = TelegramDouble.webhook_request(update, self.secret)
        return update_id, body, headers

    async def turn(self, chat_id: int, turns: Turns, window: tuple[float, float]) -> None:
        """One message and its answer; the answer counts for the rate when it came inside
        ``window`` (perf_counter bounds)."""
        import aiohttp

        update_id, body, headers = self.update(chat_id)
        answered = self.waiter.expect(chat_id)
        sent = time.perf_counter()
        try:
            async with self.session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.waiter.forget(chat_id)
            turns.failures[f"post: {type(exc).__name__}"] += 1
            return
        if status != 200:
            self.waiter.forget(chat_id)
            turns.failures[f"post: HTTP {status}"] += 1
            return
        turns.accepted.append(update_id)
        try:
            at = await asyncio.wait_for(answered, REPLY_TIMEOUT_S)
        except TimeoutError:
            self.waiter.forget(chat_id)
            turns.failures[f"no answer within {REPLY_TIMEOUT_S:g} s"] += 1
            return
        turns.latencies.append(at - sent)
        if window[0] <= at <= window[1]:
            turns.in_window += 1


async def closed_loop(
    sender: TelegramSender, senders: int, warmup_s: float, duration_s: float, first_chat: int
) -> Turns:
    """``senders`` chats, each sending its next message as soon as the last was answered.
    The rate counts answers inside the measured window, after ``warmup_s``."""
    turns = Turns(window_s=duration_s)
    start = time.perf_counter()
    window = (start + warmup_s, start + warmup_s + duration_s)
    warm = Turns()

    async def chat(chat_id: int) -> None:
        while not STOP.is_set() and time.perf_counter() < window[1]:
            await sender.turn(chat_id, turns if time.perf_counter() >= window[0] else warm, window)

    await asyncio.gather(*(chat(first_chat + n) for n in range(senders)))
    turns.in_window += warm.in_window  # warm-up turns whose answer fell in the window
    turns.failures.update(warm.failures)
    turns.accepted.extend(warm.accepted)
    return turns


async def open_loop(
    sender: TelegramSender,
    rate: float,
    duration_s: float,
    first_chat: int,
    every_minute: Callable[[int], None],
) -> Turns:
    """Messages at a fixed rate, each from a new chat, for ``duration_s``."""
    turns = Turns(window_s=duration_s)
    start = time.perf_counter()
    window = (start, start + duration_s + REPLY_TIMEOUT_S)
    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    minute = 0
    while not STOP.is_set():
        due = start + sent / rate
        now = time.perf_counter()
        if due > start + duration_s:
            break
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.ensure_future(sender.turn(first_chat + sent, turns, window))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        if int((time.perf_counter() - start) // 60) > minute:
            minute += 1
            every_minute(minute)
    if tasks:
        await asyncio.wait(tasks)
    turns.in_window = len(turns.latencies)
    return turns


def run_async(factory: Callable[[], Awaitable[Any]], waiter: ReplyWaiter | None = None) -> Any:
    import uvloop

    async def main() -> Any:
        if waiter is not None:
            waiter.bind(asyncio.get_running_loop())
        return await factory()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(main())
    if STOP.is_set():
        raise KeyboardInterrupt
    return result


def http_session(connections: int) -> Any:
    import aiohttp

    return aiohttp.ClientSession(
        # Below uvicorn's 5 s keep-alive: a sender waiting longer for its answer would else
        # post on a connection the server has just closed (a reset, not the product's error).
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=3.0),
        timeout=aiohttp.ClientTimeout(total=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclass(frozen=True)
class RunsCheck:
    accepted: int
    succeeded: int  # runs that succeeded with a node trace
    missing: int  # accepted events without a run
    other: Counter[str]  # runs in another status, or without trace

    def text(self) -> str:
        text = f"{self.succeeded:,}/{self.accepted:,} runs succeeded with their trace"
        if self.missing:
            text += f", {self.missing} events without a run"
        if self.other:
            text += ", " + ", ".join(f"{n} {status}" for status, n in self.other.items())
        return text

    @property
    def ok(self) -> bool:
        return self.succeeded == self.accepted


def runs_check(connector_id: int, update_ids: Sequence[int], nodes: int) -> RunsCheck:
    """Every accepted update's event has a run that succeeded and traced ``nodes`` nodes."""
    from django.db import connection
    from django.db.models import Count

    from connectors.models import InboundEvent
    from workflows.models import Run

    ids = [str(update_id) for update_id in update_ids]
    run_ids: list[Any] = []
    missing = 0
    for first in range(0, len(ids), 5000):
        events = InboundEvent.objects.filter(
            connector_id=connector_id, event_id__in=ids[first : first + 5000]
        ).values_list("run_id", flat=True)
        found = list(events)
        missing += len(ids[first : first + 5000]) - len([r for r in found if r])
        run_ids += [r for r in found if r]
    other: Counter[str] = Counter()
    succeeded = 0
    for first in range(0, len(run_ids), 5000):
        rows = (
            Run.objects.filter(pk__in=run_ids[first : first + 5000])
            .annotate(traced=Count("node_runs"))
            .values_list("status", "traced")
        )
        for status, traced in rows:
            if status == Run.Status.SUCCEEDED and traced >= nodes:
                succeeded += 1
            else:
                other[f"{status} ({traced} nodes traced)"] += 1
    connection.close()
    return RunsCheck(len(ids), succeeded, missing, other)


def wait_drained(seconds: float = 60.0) -> None:
    """Until the runs queue is empty (replies of timed-out turns may still be coming)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + seconds
    while client.llen("runs") and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)  # the last runs finish and commit


# --- Scenario 2: echo workflow end to end --------------------------------------------------


def scenario_echo(
    args: argparse.Namespace, port: int, objects: Objects, waiter: ReplyWaiter
) -> tuple[list[Row], float]:
    url = f"http://{HOST}:{port}/connectors/{objects.echo_connector}/events"
    rows: list[Row] = []
    rate_at_60 = 0.0
    for n, senders in enumerate(args.echo_senders):
        log(f"scenario 2: echo end to end, {senders} senders for {args.echo_seconds:g} s")

        async def phase(senders: int = senders, n: int = n) -> Turns:
            async with http_session(senders) as session:
                sender = TelegramSender(
                    session, url, objects.secret, waiter, first_id=(20 + n) * 10_000_000
                )
                return await closed_loop(
                    sender, senders, args.warmup, args.echo_seconds, 1_000_000 * (n + 1)
                )

        turns = run_async(phase, waiter)
        wait_drained()
        check = runs_check(objects.echo_connector, turns.accepted, nodes=4)
        log(
            f"  {turns.rate:,.1f} answered/s, p50 {ms(seconds_p(turns.latencies, 0.5))} ms, "
            f"p99 {ms(seconds_p(turns.latencies, 0.99))} ms, errors {dict(turns.failures)}; "
            + check.text()
        )
        if senders == args.echo_senders[0]:
            rate_at_60 = turns.rate
        rows.append(
            Row(
                "2 echo workflow end to end",
                f"{senders} closed-loop senders",
                f"{turns.rate:,.1f} runs/s answered",
                ms(seconds_p(turns.latencies, 0.5)),
                ms(seconds_p(turns.latencies, 0.99)),
                str(turns.errors),
                check.text(),
                "n8n: up to 220 executions/s (webhook + Set, c5a.large, 2 vCPU); Dify: 11 "
                "runs/s (8 cores), 4 s to first byte at 60 concurrent"
                if n == 0
                else "",
            )
        )
    return rows, rate_at_60


# --- Scenario 3: chat Q&A over web chat ----------------------------------------------------


@dataclass
class ChatTurns:
    ttft: list[float] = field(default_factory=list)  # message sent -> first streamed text
    full: list[float] = field(default_factory=list)  # message sent -> final message
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.failures.values())


async def visitor(
    session: Any, base: str, connector_id: int, *, turns: ChatTurns, deadline: float, gen: TextGen
) -> None:
    """A web chat visitor asking a new question as soon as the last answer ended."""
    import aiohttp

    async with session.post(f"{base}/connectors/{connector_id}/webchat/session") as response:
        token = (await response.json())["token"]
    socket_url = f"ws://{HOST}:{base.rsplit(':', 1)[1]}/ws/webchat/{connector_id}/?token={token}"
    async with session.ws_connect(socket_url, heartbeat=None) as socket:
        ready = await socket.receive_json(timeout=30)
        if ready.get("type") != "ready":
            turns.failures[f"socket: {ready}"] += 1
            return
        while not STOP.is_set() and time.perf_counter() < deadline:
            message_id = str(uuid.uuid4())
            question = gen.question()
            sent = time.perf_counter()
            await socket.send_json({"type": "message", "id": message_id, "text": question})
            first: float | None = None
            try:
                while True:
                    frame = await socket.receive(timeout=REPLY_TIMEOUT_S)
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        turns.failures[f"socket closed ({frame.type.name})"] += 1
                        return
                    data = json.loads(frame.data)
                    kind = data.get("type")
                    if kind == "ping":
                        await socket.send_json({"type": "pong"})
                    elif kind == "stream" and first is None and data.get("text"):
                        first = time.perf_counter()
                    elif kind == "message" and data.get("reply_to") == message_id:
                        break
                    elif kind == "error":
                        turns.failures[f"error frame: {data.get('detail')}"] += 1
                        return
            except TimeoutError:
                turns.failures[f"no answer within {REPLY_TIMEOUT_S:g} s"] += 1
                return
            done = time.perf_counter()
            if first is None:
                turns.failures["answer not streamed"] += 1
                first = done
            if data.get("text", "").strip() != QA_REPLY:
                turns.failures["unexpected answer"] += 1
            turns.ttft.append(first - sent)
            turns.full.append(done - sent)
            turns.completed += 1


def model_ttft(qa: DoubleProcess) -> list[float]:
    """The model's own time to first token: direct streaming calls, 8 at a time."""

    async def measure() -> list[float]:
        client = direct_client(qa.base_url, 16, 30.0)
        samples: list[float] = []
        for _ in range(5):

            async def one() -> float | None:
                response = await client.chat.completions.create(
                    model=qa.model, messages=[{"role": "user", "content": "hi"}], stream=True
                )
                first = None
                async for chunk in response:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter()
                return first

            result = await wave(8, one, 30.0)
            samples += result.ttfts
        await client.close()
        return samples

    return list(run_async(measure))


def scenario_qa(
    args: argparse.Namespace, port: int, objects: Objects, qa: DoubleProcess
) -> tuple[list[Row], str]:
    base = f"http://{HOST}:{port}"
    model = model_ttft(qa)
    model_p50 = seconds_p(model, 0.5)
    log(f"scenario 3: the model's own time to first token: p50 {ms(model_p50)} ms")
    # Every worker process loads the embedding model on its first question (seconds): warm
    # them all before measuring.
    warm_visitors = 4 * WORKERS.processes

    async def conversations(count: int, seconds: float, seed: int) -> ChatTurns:
        turns = ChatTurns(window_s=seconds)
        deadline = time.perf_counter() + seconds
        async with http_session(count) as session:
            await asyncio.gather(
                *(
                    visitor(
                        session,
                        base,
                        objects.webchat_connector,
                        turns=turns,
                        deadline=deadline,
                        gen=TextGen(random.Random(seed + n)),
                    )
                    for n in range(count)
                )
            )
        return turns

    warm = run_async(lambda: conversations(warm_visitors, 8.0, 0))
    log(f"scenario 3: warm-up, {warm.completed} answers from {warm_visitors} visitors")
    rows: list[Row] = []
    sustained = 0
    sustained_row: ChatTurns | None = None
    for visitors in args.qa_visitors:
        log(f"scenario 3: chat Q&A, {visitors} visitors for {args.qa_seconds:g} s")
        turns = run_async(
            functools.partial(conversations, visitors, args.qa_seconds, 1000 * visitors)
        )
        p99 = seconds_p(turns.ttft, 0.99)
        passed = turns.errors == 0 and p99 <= TTFT_TARGET_S * 1000
        log(
            f"  {turns.completed} answers, TTFT p50 {ms(seconds_p(turns.ttft, 0.5))} ms "
            f"p99 {ms(p99)} ms, full p99 {ms(seconds_p(turns.full, 0.99))} ms, "
            f"errors {dict(turns.failures)}"
        )
        rows.append(
            Row(
                f"3 chat Q&A (web chat, {objects.chunks:,} chunks, streamed)",
                f"{visitors} visitors asking back to back",
                f"{turns.completed / args.qa_seconds:,.1f} answers/s; TTFT over the model's "
                f"{ms(model_p50)} ms: +{ms(seconds_p(turns.ttft, 0.5) - model_p50)} ms (p50)",
                ms(seconds_p(turns.ttft, 0.5)),
                ms(p99),
                str(turns.errors),
                ("p99 first token within 800 ms" if passed else "over the 800 ms target")
                + f"; full answer p99 {ms(seconds_p(turns.full, 0.99))} ms",
                "Dify: 60 concurrent on a 3-node echo chatflow, 4 s to first byte"
                if not rows
                else "",
            )
        )
        if not passed:
            break
        sustained, sustained_row = visitors, turns
    summary = (
        f"{sustained} visitors sustained with p99 first token under 800 ms"
        if sustained_row is not None
        else "no step kept p99 first token under 800 ms"
    )
    return rows, summary


# --- Scenario 4: LLM fan-out ----------------------------------------------------------------


def scenario_fanout(
    args: argparse.Namespace,
    port: int,
    objects: Objects,
    waiter: ReplyWaiter,
    slow: DoubleProcess,
) -> list[Row]:
    count = args.fanout
    log(f"scenario 4: {count} conversations at once against a {FANOUT_TTFT_S:g} s model")

    async def direct() -> Any:
        client = direct_client(slow.base_url, count, 60.0)

        async def one() -> float | None:
            await client.chat.completions.create(
                model=slow.model, messages=[{"role": "user", "content": "hi"}]
            )
            return None

        result = await wave(count, one, 60.0)
        await client.close()
        return result

    slow.reset()
    direct_wave = run_async(direct)
    direct_peak = slow.stats().max_in_flight
    log(f"  direct: {count} calls in {direct_wave.wall_s:.2f} s, {direct_peak} in flight")

    url = f"http://{HOST}:{port}/connectors/{objects.fanout_connector}/events"

    async def through() -> tuple[Turns, float]:
        async with http_session(count) as session:
            sender = TelegramSender(session, url, objects.fanout_secret, waiter, 40 * 10_000_000)
            turns = Turns()
            start = time.perf_counter()
            window = (start, start + 3600.0)
            await asyncio.gather(*(sender.turn(9_000_000 + n, turns, window) for n in range(count)))
            return turns, time.perf_counter() - start

    slow.reset()
    turns, wall = run_async(through, waiter)
    peak = slow.stats().max_in_flight
    wait_drained()
    check = runs_check(objects.fanout_connector, turns.accepted, nodes=3)
    direct_rate = count / direct_wave.wall_s
    rate = len(turns.latencies) / wall
    log(f"  through the product: {len(turns.latencies)} answers in {wall:.2f} s, {peak} in flight")
    return [
        Row(
            "4 LLM fan-out, 1 s model",
            f"{count} calls at once, bare openai client",
            f"{direct_rate:,.0f} calls/s; {direct_peak} in flight at the model",
            ms(seconds_p(direct_wave.latencies, 0.5)),
            ms(seconds_p(direct_wave.latencies, 0.99)),
            str(direct_wave.errors),
            "the ceiling",
        ),
        Row(
            "4 LLM fan-out, 1 s model",
            f"{count} Telegram conversations at once",
            f"{rate:,.0f} answers/s ({rate / direct_rate:.2f} of direct); {peak} in flight "
            "at the model",
            ms(seconds_p(turns.latencies, 0.5)),
            ms(seconds_p(turns.latencies, 0.99)),
            str(turns.errors),
            check.text(),
            "MaxKB: 3 concurrent, 27 s; Dify: 10 concurrent agent requests, about 60 s",
        ),
    ]


# --- Scenario 5: soak ---------------------------------------------------------------------------


def scenario_soak(
    args: argparse.Namespace,
    port: int,
    objects: Objects,
    *,
    waiter: ReplyWaiter,
    telegram: BenchTelegram,
    processes: dict[str, int],
    rate: float,
) -> tuple[list[Row], dict[str, tuple[float, float]]]:
    log(f"scenario 5: soak, {rate:.1f} messages/s for {args.soak_minutes:g} minutes")
    url = f"http://{HOST}:{port}/connectors/{objects.echo_connector}/events"
    before = memory_snapshot(processes)

    def every_minute(minute: int) -> None:
        telegram.trim()
        now = memory_snapshot(processes)
        log(
            f"  minute {minute}: "
            + ", ".join(f"{label} {mib:,.0f} MiB" for label, mib in now.items())
        )

    async def phase() -> Turns:
        async with http_session(256) as session:
            sender = TelegramSender(session, url, objects.secret, waiter, 50 * 10_000_000)
            return await open_loop(sender, rate, args.soak_minutes * 60, 20_000_000, every_minute)

    turns = run_async(phase, waiter)
    wait_drained()
    after = memory_snapshot(processes)
    check = runs_check(objects.echo_connector, turns.accepted, nodes=4)
    memory = {label: (before.get(label, math.nan), after[label]) for label in after}
    growth = ", ".join(
        f"{label} {start:,.0f} -> {end:,.0f} MiB" for label, (start, end) in memory.items()
    )
    log(f"  memory: {growth}")
    return [
        Row(
            "5 soak (echo, open loop)",
            f"{rate:.1f} messages/s for {args.soak_minutes:g} min",
            f"{len(turns.latencies):,} answered",
            ms(seconds_p(turns.latencies, 0.5)),
            ms(seconds_p(turns.latencies, 0.99)),
            str(turns.errors),
            check.text() + ("" if check.missing == 0 else " (lost runs)"),
            "LangBot's soak gate: p95 within 250 ms over 24 h",
        )
    ], memory


# --- Report ---------------------------------------------------------------------------------


def report(
    rows: Sequence[Row],
    *,
    started: datetime,
    command: str,
    load_before: str,
    qa_summary: str,
    memory: dict[str, tuple[float, float]],
    objects: Objects,
    worker_log: str,
) -> str:
    lines = [
        "| Scenario | Load | Throughput | p50 ms | p99 ms | Errors | Checks | Peers (published) |",
        "|---|---|---|--:|--:|--:|---|---|",
    ]
    lines += [
        f"| {r.scenario} | {r.load} | {r.rate} | {r.p50} | {r.p99} | {r.errors} | {r.checks} "
        f"| {r.peers} |"
        for r in rows
    ]
    lines += ["", f"- Date: {started:%Y-%m-%d %H:%M} UTC", *machine_lines()]
    lines += [
        f"- Load average before the run (1, 5, 15 min): {load_before}",
        f"- Command: `{command}` (in {REPO})",
        f"- Web: `uvicorn assistant_site.asgi:application --workers {WEB_WORKERS} --lifespan "
        "off --no-access-log` (the run command's), settings.base, DEBUG off, LOG_LEVEL=WARNING,"
        f" psycopg pool; {WORKERS.processes} x `{shlex.join(worker_argv()[1:])}` (the run "
        f"command's); Redis `{REDIS_URL}`; Chroma on loopback; PostgreSQL "
        "`assistant_studio_bench`. No beat: a lost run would not be re-enqueued by the sweep.",
        f"- Versions: Django {version('django')}, uvicorn {version('uvicorn')}, Celery "
        f"{version('celery')}, channels {version('channels')}, psycopg {version('psycopg')}, "
        f"chromadb {version('chromadb')}, aiohttp {version('aiohttp')} (load generator).",
        f"- Model doubles (tests/doubles/vllm_server.py, vLLM's wire format): scenario 3 "
        f"{QA_TTFT_S * 1000:.0f} ms to the first token then {1 / QA_TOKEN_DELAY_S:.0f} "
        f"tokens/s, a 30-token answer; scenario 4 {FANOUT_TTFT_S:g} s, an 8-token answer.",
        f"- Scenario 3: {qa_summary}. Knowledge base of {objects.chunks:,} synthetic chunks "
        "(hybrid retrieval, top 4, the local embedding model for the question).",
    ]
    if memory:
        lines.append(
            "- Memory (RSS, MiB) at the soak's start and end: "
            + "; ".join(f"{label} {a:,.0f} -> {b:,.0f}" for label, (a, b) in memory.items())
            + "."
        )
    if worker_log:
        lines.append(f"- Worker log: {worker_log}")
    return "\n".join(lines)


def worker_tracebacks(log_dir: Path) -> str:
    return " ".join(filter(None, map(log_tracebacks, sorted(log_dir.glob("worker*.log")))))


# --- Main ------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    STOP.set()
    connector_ingress.STOP.set()
    log(f"signal {signum}: stopping")
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ingress-connections", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--ingress-seconds", type=float, default=10.0)
    parser.add_argument("--echo-senders", type=int, nargs="+", default=[60, 200])
    parser.add_argument("--echo-seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--qa-visitors", type=int, nargs="+", default=[1, 2, 5, 10, 20, 40, 80])
    parser.add_argument("--qa-seconds", type=float, default=20.0)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=256)
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=RUNS_WORKER_THREADS,
        help="threads of the runs worker (default: the run command's)",
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=RUNS_WORKERS,
        help="runs worker processes (default: the run command's)",
    )
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument(
        "--soak-rate",
        type=float,
        help="messages/s of the soak (default: half of scenario 2's rate at its first step)",
    )
    parser.add_argument("--only", nargs="+", type=int, choices=range(1, 6), default=[1, 2, 3, 4, 5])
    args = parser.parse_args(argv)
    if not 0.1 <= args.soak_minutes <= 24 * 60:
        parser.error("--soak-minutes must be within 0.1-1440")
    if args.chunks < 100 or args.fanout < 1:
        parser.error("--chunks must be at least 100 and --fanout at least 1")
    return args


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    memory: dict[str, tuple[float, float]] = field(default_factory=dict)
    qa_summary: str = "not run"
    objects: Objects = field(default_factory=Objects)
    worker_log: str = ""


def delete_earlier(user: Any) -> None:
    """What earlier runs of this benchmark left (kept until now for inspection)."""
    from django.db import connection

    from connectors.models import Connector
    from knowledge.models import KnowledgeBase
    from workflows.models import Workflow

    Connector.objects.filter(name__startswith="bench-e2e-").delete()
    Workflow.objects.filter(created_by=user, name__startswith="bench e2e ").delete()
    KnowledgeBase.objects.filter(created_by=user).delete()
    connection.close()


def start_stack(
    args: argparse.Namespace, stack: contextlib.ExitStack, waiter: ReplyWaiter
) -> SimpleNamespace:
    """Everything but the runs worker, started; each stopped when ``stack`` closes."""
    var_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-")))
    (var_dir / "prometheus").mkdir()
    env = production_env(var_dir, redis_url=REDIS_URL)
    env["SECRETS_KEYS"] = f"bench:{base64.b64encode(os.urandom(32)).decode()}"
    # The doubles listen on loopback, which outbound calls refuse by default (SSRF).
    env["OUTBOUND_HTTP_ALLOWED_HOSTS"] = "127.0.0.1/32"
    common.prepare_database(env)
    env["CHROMA_URL"] = stack.enter_context(chroma_server(var_dir / "chroma"))
    user = setup_django(env)
    delete_earlier(user)
    flush_redis()
    stack.callback(flush_redis)
    qa = DoubleProcess(
        QA_TTFT_S, var_dir / "vllm-qa.log", token_delay_s=QA_TOKEN_DELAY_S, reply=QA_REPLY
    ).start()
    stack.callback(qa.stop)
    slow = DoubleProcess(FANOUT_TTFT_S, var_dir / "vllm-slow.log").start()
    stack.callback(slow.stop)
    telegram = stack.enter_context(BenchTelegram(waiter))
    objects = build_objects(user, telegram, qa, slow, args.chunks)
    port = free_port()
    uvicorn = next(server for server in SERVERS if server.name == "uvicorn")
    web = stack.enter_context(running_server(uvicorn, port, WEB_WORKERS, env, var_dir))
    return SimpleNamespace(
        var_dir=var_dir,
        env=env,
        qa=qa,
        slow=slow,
        telegram=telegram,
        objects=objects,
        port=port,
        web=web,
    )


def run_scenarios(args: argparse.Namespace, results: Results) -> None:
    waiter = ReplyWaiter()
    with contextlib.ExitStack() as stack:
        up = start_stack(args, stack, waiter)
        results.objects = objects = up.objects
        if 1 in args.only:
            results.rows += scenario_ingress(args, up.web, up.port, objects)
            flush_redis()  # the ingress events' tasks: this scenario measured ingress only
        stack.callback(lambda: setattr(results, "worker_log", worker_tracebacks(up.var_dir)))
        workers = stack.enter_context(runs_workers(up.env, up.var_dir))
        processes = {
            "web (uvicorn)": up.web.pid,
            **{f"runs worker {n}": proc.pid for n, proc in enumerate(workers, start=1)},
            "model double (Q&A)": up.qa.proc.pid,
            "model double (1 s)": up.slow.proc.pid,
        }
        echo_rate = args.soak_rate * 2 if args.soak_rate else 0.0
        if 2 in args.only:
            echo_rows, measured = scenario_echo(args, up.port, objects, waiter)
            results.rows += echo_rows
            echo_rate = echo_rate or measured
        if 3 in args.only:
            qa_rows, results.qa_summary = scenario_qa(args, up.port, objects, up.qa)
            results.rows += qa_rows
        if 4 in args.only:
            results.rows += scenario_fanout(args, up.port, objects, waiter, up.slow)
        if 5 in args.only:
            soak_rows, results.memory = scenario_soak(
                args,
                up.port,
                objects,
                waiter=waiter,
                telegram=up.telegram,
                processes=processes,
                rate=max(1.0, echo_rate / 2),
            )
            results.rows += soak_rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    WORKERS.threads, WORKERS.processes = args.worker_threads, args.worker_processes
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    command = shlex.join([".venv/bin/python", "bench/end_to_end.py", *sys.argv[1:]])
    results = Results()
    try:
        run_scenarios(args, results)
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    print(
        report(
            results.rows,
            started=started,
            command=command,
            load_before=load_before,
            qa_summary=results.qa_summary,
            memory=results.memory,
            objects=results.objects,
            worker_log=results.worker_log,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
