"""LLM gateway: fan-out, overhead and time to first token, against a vLLM protocol double.

Starts ``tests.doubles.vllm_server.VllmDouble`` in a child process (so that its CPU is not
this process's) on a free loopback port, with a fixed time to first token (``--ttft``, 1 s)
and a short reply (8 tokens, no delay between tokens). Scenarios, each bounded by
``--timeout``:

1. direct client: ``--requests`` (256) concurrent non-streaming chat calls with one
   ``openai.AsyncOpenAI`` whose connection pool allows that many, on one event loop
   (scenarios 1-3 run ``--rounds`` times, 3, interleaved; a new client each time);
2. gateway in-process: the same calls through ``Gateway().chat`` with an endpoint of
   ``max_concurrency`` = ``--requests``;
3. streaming: 64 concurrent streaming calls, direct and through the gateway (``on_delta``
   records the first delta): time to first token;
4. through real workers (unless ``--skip-workers``): a model endpoint ``bench-llm`` and a
   published workflow manual_trigger -> llm(stream off) -> end in ``assistant_studio_bench``
   (both created or updated idempotently), one real Celery worker on the ``runs`` queue
   (``-P threads -c 64``, then ``-c 256`` with a larger database pool), ``--requests`` runs
   submitted at once with ``services.run_start``, twice per worker: the first wave meets
   threads that never ran anything, the second warm ones.

The double counts the requests it is answering at once: its ``max_in_flight`` is how many
requests the client (or the worker's gateway) really kept open. Prints the date, the machine,
the command and one Markdown table on stdout; progress on stderr. See bench/README.md.

    .venv/bin/python bench/llm_gateway.py [--requests 256] [--ttft 1.0] [--timeout 60]
                                          [--rounds 3] [--worker-db-pool-size 64]
                                          [--skip-workers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DATABASE_URL,
    REPO,
    BenchError,
    log,
    percentile_ms,
    production_env,
)
from bench.http_servers import machine_busy_cpu_s, process_tree_cpu_s
from bench.workflow_runs import (
    STOP,
    chain_graph,
    exact_peak,
    fmt,
    machine_line,
    node,
    run_logged,
    setup_django,
    stop_worker,
    submit,
    wait_finished,
    wait_worker_ready,
)

REDIS_URL = "redis://127.0.0.1:6379/12"  # workflow_runs.py uses 13, http_servers.py 14
ENDPOINT_NAME = "bench-llm"
WORKFLOW_NAME = "bench llm gateway"
REPLY = "one two three four five six seven eight"  # 8 tokens (and the end-of-sequence token)
PROMPT = "Say eight words."
STREAMING_CALLS = 64
WORKER_THREADS = (64, 256)
SUBMIT_THREADS = 64
DOUBLE_START_TIMEOUT_S = 30.0


# --- The double, in its own process ------------------------------------------------------


def serve_double() -> None:
    """The child process: serve a VllmDouble and answer ``reset``/``stats`` lines on stdin
    with one JSON line each. Parameters: one JSON argument. Ends when stdin closes."""
    from tests.doubles.vllm_server import VllmDouble

    params = json.loads(sys.argv[1])
    double = VllmDouble(
        ttft_s=float(params["ttft_s"]),
        token_delay_s=float(params.get("token_delay_s", 0.0)),
        reply=params["reply"],
    )
    with double:
        print(json.dumps({"base_url": double.base_url, "model": double.model}), flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                double.reset()
            stats = {
                "in_flight": double.in_flight,
                "max_in_flight": double.max_in_flight,
                "requests": len(double.requests),
            }
            print(json.dumps(stats), flush=True)


@dataclass(frozen=True)
class DoubleStats:
    in_flight: int
    max_in_flight: int
    requests: int  # received since the last reset


class DoubleProcess:
    """The parent's handle on the double's process."""

    def __init__(
        self, ttft_s: float, log_path: Path, *, token_delay_s: float = 0.0, reply: str = REPLY
    ) -> None:
        params = json.dumps({"ttft_s": ttft_s, "token_delay_s": token_delay_s, "reply": reply})
        code = "from bench.llm_gateway import serve_double; serve_double()"
        self.argv = [sys.executable, "-c", code, params]
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.model = ""

    def start(self) -> DoubleProcess:
        with self.log_path.open("a") as err:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # Ctrl-C reaches this process only; it stops the child
            )
        hello = json.loads(self._line(DOUBLE_START_TIMEOUT_S))
        self.base_url, self.model = hello["base_url"], hello["model"]
        return self

    def _line(self, timeout_s: float) -> str:
        proc = self.proc
        if proc is None or proc.stdout is None:
            raise BenchError("the double is not running")
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the vLLM double did not answer (exit {proc.poll()}):\n{tail}")
        return line

    def _ask(self, command: str) -> DoubleStats:
        stdin: IO[str] | None = self.proc.stdin if self.proc is not None else None
        if stdin is None:
            raise BenchError("the double is not running")
        stdin.write(command + "\n")
        stdin.flush()
        answer = json.loads(self._line(10.0))
        return DoubleStats(answer["in_flight"], answer["max_in_flight"], answer["requests"])

    def reset(self) -> DoubleStats:
        return self._ask("reset")

    def stats(self) -> DoubleStats:
        return self._ask("stats")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the child stops its server and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- One wave of concurrent calls ------------------------------------------------------


@dataclass
class Wave:
    latencies: list[float]  # seconds, successful calls, sorted
    ttfts: list[float]  # seconds to the first content delta, streaming calls
    errors: int
    wall_s: float
    cpu_s: float  # this process's CPU time during the wave
    first_error: str


# A call: awaits one model answer and returns the perf_counter time of its first content
# delta (None when not streaming). It raises on a wrong answer.
Call = Callable[[], Awaitable[float | None]]


async def wave(count: int, call: Call, timeout_s: float) -> Wave:
    latencies: list[float] = []
    ttfts: list[float] = []
    failures: list[str] = []

    async def timed() -> None:
        started = time.perf_counter()
        try:
            first = await call()
        except Exception as exc:  # counted and reported; the other calls go on
            failures.append(repr(exc)[:300])
            return
        latencies.append(time.perf_counter() - started)
        if first is not None:
            ttfts.append(first - started)

    cpu = time.process_time()
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(timed()) for _ in range(count)]
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        failures.append(f"{len(pending)} calls still running after {timeout_s:g} s")
    return Wave(
        latencies=sorted(latencies),
        ttfts=sorted(ttfts),
        errors=count - len(latencies),
        wall_s=wall,
        cpu_s=cpu,
        first_error=failures[0] if failures else "",
    )


def direct_client(base_url: str, pool: int, timeout_s: float) -> Any:
    """One AsyncOpenAI with a connection pool of ``pool`` and no retries of its own."""
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
    timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0))
    return openai.AsyncOpenAI(
        api_key="EMPTY",
        base_url=base_url,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
    )


def endpoint_config(double: DoubleProcess, max_concurrency: int, timeout_s: float) -> Any:
    from workflows.llm.endpoints import EndpointConfig

    return EndpointConfig(
        id=1,
        name=ENDPOINT_NAME,
        kind="chat",
        base_url=double.base_url,
        model=double.model,
        timeout_s=timeout_s,
        max_concurrency=max_concurrency,
        revision="bench",
    )


def check_reply(text: str | None) -> None:
    if text != REPLY:
        raise BenchError(f"unexpected reply {text!r}")


def direct_call(client: Any, model: str, *, stream: bool) -> Call:
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def plain() -> float | None:
        completion = await client.chat.completions.create(model=model, messages=messages)
        check_reply(completion.choices[0].message.content)
        return None

    async def streamed() -> float | None:
        first: float | None = None
        pieces: list[str] = []
        response = await client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            async for chunk in response:
                for choice in chunk.choices:
                    if choice.index == 0 and choice.delta.content:
                        if first is None:
                            first = time.perf_counter()
                        pieces.append(choice.delta.content)
        finally:
            await response.close()
        check_reply("".join(pieces))
        return first

    return streamed if stream else plain


def gateway_call(gateway: Any, endpoint: Any, *, stream: bool) -> Call:
    from workflows.llm.gateway import ChatRequest

    request = ChatRequest(messages=[{"role": "user", "content": PROMPT}], stream=stream)

    async def call() -> float | None:
        first: list[float] = []

        def on_delta(piece: str) -> None:
            if not first:
                first.append(time.perf_counter())

        result = await gateway.chat([endpoint], request, on_delta=on_delta if stream else None)
        check_reply(result.text)
        return first[0] if first else None

    return call


# --- Rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    calls: int  # that succeeded, over all rounds
    errors: int
    wall_s: float  # per wave
    rate: float  # calls (or runs) per second
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    max_in_flight: int  # at the double
    requests: int  # the double received
    cpu_ms: float  # per successful call (or run)
    notes: str = ""


def waves_row(scenario: str, waves: Sequence[Wave], stats: Sequence[DoubleStats]) -> Row:
    """The waves of one scenario (one per round) as one row: latencies pooled."""
    latencies = sorted(value for result in waves for value in result.latencies)
    ttfts = sorted(value for result in waves for value in result.ttfts)
    errors = sum(result.errors for result in waves)
    for result in waves:
        if result.first_error:
            log(f"  {scenario}: {result.errors} errors, first: {result.first_error}")
    wall = sum(result.wall_s for result in waves)
    calls = len(latencies)
    return Row(
        scenario=scenario,
        calls=calls,
        errors=errors,
        wall_s=wall / len(waves),
        rate=calls / wall if wall > 0 else math.nan,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        ttft_p50_ms=percentile_ms(ttfts, 0.50),
        ttft_p99_ms=percentile_ms(ttfts, 0.99),
        max_in_flight=max(stat.max_in_flight for stat in stats),
        requests=sum(stat.requests for stat in stats),
        cpu_ms=sum(result.cpu_s for result in waves) * 1000 / calls if calls else math.nan,
    )


async def one_wave(
    args: argparse.Namespace, double: DoubleProcess, *, gateway: bool, stream: bool, count: int
) -> tuple[Wave, DoubleStats]:
    """A new client (or a new Gateway), one warm-up call (imports, the first connection),
    then ``count`` concurrent calls."""
    from workflows.llm.gateway import Gateway

    close: Callable[[], Awaitable[None]]
    if gateway:
        instance = Gateway()
        endpoint = endpoint_config(double, args.requests, args.timeout)
        call = gateway_call(instance, endpoint, stream=stream)
        close = instance.aclose
    else:
        client = direct_client(double.base_url, count, args.timeout)
        call = direct_call(client, double.model, stream=stream)
        close = client.close
    try:
        await asyncio.wait_for(call(), args.timeout)
        double.reset()
        result = await wave(count, call, args.timeout)
        return result, double.stats()
    finally:
        await close()


async def in_process(args: argparse.Namespace, double: DoubleProcess) -> list[Row]:
    """Scenarios 1-3, ``--rounds`` times, interleaved so that drift hits each alike."""
    streaming = min(STREAMING_CALLS, args.requests)
    scenarios = [
        ("1 direct AsyncOpenAI", False, False, args.requests),
        ("2 gateway in-process", True, False, args.requests),
        ("3a streaming, direct AsyncOpenAI", False, True, streaming),
        ("3b streaming, gateway in-process", True, True, streaming),
    ]
    waves: dict[str, list[Wave]] = {label: [] for label, *_ in scenarios}
    stats: dict[str, list[DoubleStats]] = {label: [] for label, *_ in scenarios}
    for round_ in range(1, args.rounds + 1):
        for label, gateway, stream, count in scenarios:
            result, counted = await one_wave(
                args, double, gateway=gateway, stream=stream, count=count
            )
            waves[label].append(result)
            stats[label].append(counted)
            log(
                f"{label} (round {round_}/{args.rounds}): {len(result.latencies)}/{count} ok "
                f"in {result.wall_s:.2f} s, max in flight {counted.max_in_flight}"
            )
    return [waves_row(label, waves[label], stats[label]) for label, *_ in scenarios]


# --- Through real workers --------------------------------------------------------------


def worker_argv(threads: int) -> list[str]:
    return [
        *(str(Path(sys.executable).with_name("celery")), "-A", "assistant_site", "worker"),
        *("-Q", "runs", "-P", "threads", "-c", str(threads)),
        *("--without-mingle", "--without-gossip", "--loglevel", "WARNING"),
    ]


def start_worker(threads: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    argv = worker_argv(threads)
    log(f"starting: {shlex.join(argv)}")
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def bench_endpoint(user: Any, double: DoubleProcess) -> Any:
    """The model endpoint ``bench-llm`` pointing at this run's double: created, or updated
    in place (its port changes from run to run), and usable by the bench user."""
    from assistant_site.sharing import owner_permissions_grant
    from workflows import services
    from workflows.models import ModelEndpoint

    data: dict[str, Any] = {
        "kind": "chat",
        "base_url": double.base_url,
        "model": double.model,
        "api_key": "",
        "timeout_s": 60.0,
        "max_concurrency": 256,
        "default_params": {},
        "enabled": True,
    }
    endpoint = ModelEndpoint.objects.filter(name=ENDPOINT_NAME).first()
    if endpoint is None:
        return services.model_endpoint_create(actor=user, data={"name": ENDPOINT_NAME, **data})
    endpoint = services.model_endpoint_update(endpoint=endpoint, data=data)
    owner_permissions_grant(user=user, obj=endpoint)
    return endpoint


def bench_workflow(user: Any) -> Any:
    """manual_trigger -> llm(bench-llm, no streaming) -> end, published; the same workflow
    from run to run (a new version only when the graph changed), without its earlier runs."""
    from workflows import services
    from workflows.models import Run, Workflow

    graph = chain_graph(node("ask", "llm", endpoints=[ENDPOINT_NAME], prompt=PROMPT, stream=False))
    workflow = Workflow.objects.filter(name=WORKFLOW_NAME, created_by=user).order_by("pk").first()
    if workflow is None:
        workflow = services.workflow_create(actor=user, name=WORKFLOW_NAME)
    latest = workflow.versions.order_by("-number").first()
    if latest is None or latest.graph != graph:
        workflow = services.workflow_draft_save(
            workflow=workflow, graph=graph, base_revision=workflow.draft_revision
        )
        services.workflow_publish(workflow=workflow, actor=user, changelog="benchmark")
    Run.objects.filter(workflow=workflow).delete()
    return workflow


def worker_wave(
    args: argparse.Namespace,
    scenario: str,
    *,
    worker: subprocess.Popen[bytes],
    double: DoubleProcess,
    workflow: Any,
    user: Any,
) -> Row:
    """``--requests`` runs submitted at once to the running worker, until all finished."""
    from workflows.models import Run

    Run.objects.filter(workflow=workflow).delete()
    double.reset()
    log(f"{scenario}: {args.requests} runs submitted at once")
    cpu, busy = process_tree_cpu_s(worker.pid), machine_busy_cpu_s()
    started = time.monotonic()
    submit_errors = submit(workflow, user, args.requests, threads=SUBMIT_THREADS)
    log(f"  submitted in {time.monotonic() - started:.1f} s")
    if not wait_finished(workflow, args.requests, args.timeout, lambda counts: None):
        log(f"  not all runs finished within {args.timeout:g} s")
    wall = time.monotonic() - started
    cpu = process_tree_cpu_s(worker.pid) - cpu
    busy = machine_busy_cpu_s() - busy
    stats = double.stats()
    rows = list(
        Run.objects.filter(workflow=workflow).values_list(
            "status", "created_at", "started_at", "finished_at", "error"
        )
    )
    done = [
        (c, s, f)
        for status, c, s, f, _ in rows
        if status == Run.Status.SUCCEEDED and s is not None and f is not None
    ]
    errors = [e for status, *_, e in rows if status != Run.Status.SUCCEEDED]
    if errors:
        log(f"  {len(errors)} runs did not succeed; first error: {errors[0]!r}")
    latencies = sorted((f - c).total_seconds() for c, _, f in done)
    span = math.nan
    if done:
        span = (max(f for *_, f in done) - min(s for _, s, _ in done)).total_seconds()
    row = Row(
        scenario=scenario,
        calls=len(done),
        errors=submit_errors + len(errors) + (args.requests - len(rows)),
        wall_s=wall,
        rate=len(done) / span if span > 0 else math.nan,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        ttft_p50_ms=math.nan,
        ttft_p99_ms=math.nan,
        max_in_flight=stats.max_in_flight,
        requests=stats.requests,
        cpu_ms=cpu * 1000 / len(done) if done else math.nan,
        notes=f"peak {exact_peak([(s, f) for _, s, f in done])} runs running; "
        f"{busy / wall:.1f} of {os.cpu_count()} cores busy",
    )
    log(
        f"  {row.calls} runs ok, {fmt(row.rate, 1)} runs/s, "
        f"max in flight at the double {row.max_in_flight}"
    )
    return row


def worker_pass(
    args: argparse.Namespace,
    *,
    threads: int,
    pool: int | None,
    env: dict[str, str],
    log_path: Path,
    double: DoubleProcess,
    workflow: Any,
    user: Any,
) -> list[Row]:
    """One fresh worker, two waves: the first meets threads that never ran anything (each
    makes its event loop, channel layer and HTTP client then), the second warm threads."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # no task left from an earlier pass or run
    worker_env = dict(env)
    if pool is not None:
        worker_env["DB_POOL_MAX_SIZE"] = str(pool)
    label = f"4 worker -c {threads}, DB pool {pool or 10}"
    worker = start_worker(threads, worker_env, log_path)
    rows: list[Row] = []
    try:
        wait_worker_ready(worker)
        for wave_label in ("1st wave (fresh threads)", "2nd wave"):
            rows.append(
                worker_wave(
                    args,
                    f"{label}: {wave_label}",
                    worker=worker,
                    double=double,
                    workflow=workflow,
                    user=user,
                )
            )
    finally:
        stop_worker(worker)
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if text.count("Traceback"):
            log(f"worker log ({text.count('Traceback')} tracebacks), last lines:\n{text[-3000:]}")
    return rows


def through_workers(
    args: argparse.Namespace, env: dict[str, str], var_dir: Path, double: DoubleProcess
) -> list[Row]:
    log("creating the database if missing, migrating")
    run_logged([sys.executable, "scripts/create_database.py", DATABASE_URL], env, 30)
    run_logged([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    user = setup_django(env)
    bench_endpoint(user, double)
    workflow = bench_workflow(user)
    rows: list[Row] = []
    for threads in WORKER_THREADS:
        pool = None if threads == WORKER_THREADS[0] else args.worker_db_pool_size
        rows += worker_pass(
            args,
            threads=threads,
            pool=pool,
            env=env,
            log_path=var_dir / f"worker-{threads}.log",
            double=double,
            workflow=workflow,
            user=user,
        )
    return rows


# --- Report ----------------------------------------------------------------------------


def compare(rows: list[Row]) -> None:
    """Fill the notes of the gateway rows: against the direct client's row."""
    by_name = {row.scenario.split(" ", 1)[0]: index for index, row in enumerate(rows)}

    def note(index: int, text: str) -> None:
        row = rows[index]
        rows[index] = Row(**{**row.__dict__, "notes": "; ".join(filter(None, [text, row.notes]))})

    direct = rows[by_name["1"]] if "1" in by_name else None
    if direct is not None and "2" in by_name:
        gateway = rows[by_name["2"]]
        note(
            by_name["2"],
            f"{gateway.rate / direct.rate:.2f}x direct req/s, "
            f"{gateway.p50_ms - direct.p50_ms:+.0f} ms p50",
        )
    if "3a" in by_name and "3b" in by_name:
        direct_stream, gateway_stream = rows[by_name["3a"]], rows[by_name["3b"]]
        note(
            by_name["3b"],
            f"{gateway_stream.ttft_p50_ms - direct_stream.ttft_p50_ms:+.0f} ms TTFT p50, "
            f"{gateway_stream.ttft_p99_ms - direct_stream.ttft_p99_ms:+.0f} ms TTFT p99",
        )


def report(
    rows: list[Row],
    *,
    started: datetime,
    load_before: str,
    command: str,
    args: argparse.Namespace,
) -> str:
    compare(rows)
    lines = [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine_line()}.",
        f"- Load average at start: {load_before}.",
        f"- Command: `{command}`",
        f"- Double: `tests.doubles.vllm_server.VllmDouble` in its own process, "
        f"ttft_s={args.ttft:g}, token_delay_s=0, an 8-token reply. Rows 1-3: "
        f"{args.rounds} round{'s' if args.rounds > 1 else ''}, interleaved.",
        "",
        "| scenario | ok | errors | wall s | req/s | p50 ms | p99 ms | TTFT p50 ms | "
        "TTFT p99 ms | max in flight | requests | CPU ms/call | notes |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.calls:,} | {row.errors} | {row.wall_s:.2f} | "
            f"{fmt(row.rate, 1)} | {fmt(row.p50_ms)} | {fmt(row.p99_ms)} | "
            f"{fmt(row.ttft_p50_ms)} | {fmt(row.ttft_p99_ms)} | {row.max_in_flight} | "
            f"{row.requests:,} | {fmt(row.cpu_ms, 1)} | {row.notes} |"
        )
    lines += [
        "",
        "Rows 1-3: per round, a new client (or `Gateway()`), one warm-up call, then one wave "
        "of concurrent calls on one event loop in this process; latencies of all rounds "
        "pooled, wall s per wave, req/s = calls / wall time, CPU = this process per call. "
        "TTFT: from the call to the first content delta. Max in flight and requests: "
        "counted by the double (requests include any retries)."
        + (
            " Rows 4: one fresh worker per thread count, two waves of runs submitted by 64 "
            "threads calling `services.run_start`; latency is finished_at - created_at (queue "
            "wait included), runs/s from the first run started to the last finished, CPU = "
            "the worker process per run, cores busy = the whole machine during the wave."
            if any(row.scenario.startswith("4") for row in rows)
            else ""
        ),
    ]
    return "\n".join(lines)


# --- Main ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=256, help="calls in 1, 2 and runs in 4")
    parser.add_argument("--ttft", type=float, default=1.0, help="the double's seconds to reply")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument(
        "--worker-db-pool-size",
        type=int,
        default=64,
        help="DB_POOL_MAX_SIZE of the -c 256 worker (the -c 64 one keeps the default, 10)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="waves per scenario in 1-3")
    parser.add_argument("--skip-workers", action="store_true", help="scenarios 1-3 only")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 2_000 or not 0 <= args.ttft <= 30:
        parser.error("--requests must be within 1-2000 and --ttft within 0-30")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be within 1-20")
    if not 5 <= args.timeout <= 300:
        parser.error("--timeout must be within 5-300 s")
    if not 1 <= args.worker_db_pool_size <= 90:
        parser.error("--worker-db-pool-size must be within 1-90 (max_connections is 100)")

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    command = shlex.join([".venv/bin/python", "bench/llm_gateway.py", *sys.argv[1:]])
    double: DoubleProcess | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "prometheus").mkdir()
            env = production_env(var_dir, redis_url=REDIS_URL)
            # The gateway's metrics behave as in a worker (multiprocess files) from the start.
            os.environ.clear()
            os.environ.update(env)
            double = DoubleProcess(args.ttft, var_dir / "double.log").start()
            log(f"vLLM double serving {double.base_url} (ttft {args.ttft:g} s)")
            rows = asyncio.run(in_process(args, double))
            if not args.skip_workers:
                rows += through_workers(args, env, var_dir, double)
            double.stop()
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; double and worker stopped")
        return 130
    finally:
        if double is not None:
            double.stop()
    print(report(rows, started=started, load_before=load_before, command=command, args=args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
