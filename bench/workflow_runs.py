"""Workflow runs through the real worker: runs/s, submit-to-finish latency, runs in flight.

Creates (if missing) and migrates the database ``assistant_studio_bench``, uses Redis database
13, and starts one real Celery worker on the ``runs`` queue with the production settings
(``-P threads -c 64``). This process calls ``workflows.services`` directly, as a web process
would. Three scenarios, one after the other:

A. pre-filled queue: 1,000 runs of an echo workflow (trigger -> template -> end) are queued
   before the worker starts; runs/s from the first start to the last finish.
B. 200 concurrent submitters: 200 threads call ``run_start`` for 1,000 echo runs in total
   against the running worker.
C. in flight with 1 s of I/O: 256 runs of trigger -> bench_sleep(1 s) -> end submitted at once;
   the peak number of runs in status ``running`` (polled every 0.2 s) is the number of runs
   one worker process keeps in flight.

Prints one Markdown table on stdout, progress on stderr. Every scenario is bounded by
``--timeout``; the worker is stopped at the end, on error and on Ctrl-C. See bench/README.md.

    .venv/bin/python bench/workflow_runs.py [--runs 1000] [--submitters 200] [--timeout 60]
                                            [--worker-db-pool-size N]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    percentile_ms,
    production_env,
    run_step,
)

REDIS_URL = "redis://127.0.0.1:6379/13"
USERNAME = "bench-runs"
WORKER_THREADS = 64
POLL_S = 0.2
WORKER_START_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 15.0
STOP = threading.Event()


@dataclass(frozen=True)
class Row:
    scenario: str
    runs: int
    rate: float
    p50_ms: float
    p99_ms: float
    peak_polled: int
    peak_exact: int
    errors: int
    elapsed_s: float


# --- Environment, database, worker -----------------------------------------------------


def run_logged(argv: Sequence[str], env: dict[str, str], timeout_s: float = 120.0) -> None:
    output = run_step(argv, env, timeout_s)
    if output.strip():
        log(output.strip())


def worker_argv() -> list[str]:
    return [
        *(str(Path(sys.executable).with_name("celery")), "-A", "assistant_site", "worker"),
        *("-Q", "runs", "-P", "threads", "-c", str(WORKER_THREADS)),
        *("--without-mingle", "--without-gossip", "--include", "bench.sleep_node"),
        *("--loglevel", "WARNING"),
    ]


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log(f"starting: {shlex.join(worker_argv())}")
    with log_path.open("ab") as out:
        return subprocess.Popen(
            worker_argv(),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    log("stopping the worker")
    for sig, wait_s in ((signal.SIGTERM, WORKER_STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_worker_ready(proc: subprocess.Popen[bytes]) -> None:
    """Until the worker answers a ping (it is then consuming the queue)."""
    from assistant_site.celery import app

    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline and not STOP.is_set():
        if proc.poll() is not None:
            raise BenchError(f"the worker exited with {proc.returncode} at start")
        if app.control.ping(timeout=0.5):
            return
    raise BenchError("the worker did not answer a ping in time")


# --- Django side (this process) --------------------------------------------------------


def setup_django(env: dict[str, str]) -> Any:
    """Points this process at the same settings as the worker; returns the bench user."""
    user = common.setup_django(env, USERNAME)
    importlib.import_module("bench.sleep_node")  # validation must know `bench_sleep`
    return user


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


def chain_graph(middle: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [
            node("start", "manual_trigger"),
            middle,
            node("done", "end", output="ok"),
        ],
        "edges": [edge("start", middle["id"]), edge(middle["id"], "done")],
        "variables": {},
    }


def echo_graph() -> dict[str, Any]:
    return chain_graph(node("greet", "template", template="hello {{ trigger.text }}"))


def sleep_graph(seconds: float) -> dict[str, Any]:
    return chain_graph(node("wait", "bench_sleep", seconds=seconds))


def published_workflow(user: Any, name: str, graph: dict[str, Any]) -> Any:
    from workflows import services

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workflow = services.workflow_create(actor=user, name=f"{name} {stamp}")
    workflow = services.workflow_draft_save(
        workflow=workflow, graph=graph, base_revision=workflow.draft_revision
    )
    services.workflow_publish(workflow=workflow, actor=user, changelog="benchmark")
    return workflow


def submit(workflow: Any, user: Any, runs: int, threads: int) -> int:
    """run_start `runs` times from `threads` threads; returns the number of failed calls."""
    from django.db import connection

    from workflows import services

    errors = 0
    lock = threading.Lock()
    counter = iter(range(runs))

    def submitter() -> None:
        nonlocal errors
        try:
            while not STOP.is_set():
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                try:
                    services.run_start(
                        workflow=workflow, actor=user, trigger_input={"text": f"run {index}"}
                    )
                except Exception as exc:  # counted and reported, the others go on
                    with lock:
                        errors += 1
                    if errors <= 3:
                        log(f"run_start failed: {exc!r}")
                finally:
                    connection.close()  # back to the pool, as at the end of a request
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="submit") as pool:
        for future in [pool.submit(submitter) for _ in range(threads)]:
            future.result()
    return errors


def run_counts(workflow: Any) -> dict[str, int]:
    from django.db.models import Count

    from workflows.models import Run

    rows = (
        Run.objects.filter(workflow=workflow)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return dict(rows)


def wait_finished(
    workflow: Any, expected: int, timeout_s: float, on_poll: Callable[[dict[str, int]], None]
) -> bool:
    from workflows.models import Run

    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while time.monotonic() < deadline and not STOP.is_set():
        counts = run_counts(workflow)
        on_poll(counts)
        finished = sum(n for status, n in counts.items() if status in Run.FINISHED)
        if finished >= expected:
            return True
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            log(f"  {finished}/{expected} finished, {counts}")
        time.sleep(POLL_S)
    return False


def exact_peak(intervals: Sequence[tuple[datetime, datetime]]) -> int:
    """Most runs between started_at and finished_at at the same instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def measure(
    scenario: str,
    workflow: Any,
    *,
    expected: int,
    submit_errors: int,
    timeout_s: float,
    started: float,
) -> Row:
    from workflows.models import Run

    peak = 0

    def on_poll(counts: dict[str, int]) -> None:
        nonlocal peak
        peak = max(peak, counts.get(Run.Status.RUNNING, 0))

    if not wait_finished(workflow, expected, timeout_s, on_poll):
        log(f"  {scenario}: not all runs finished within {timeout_s:.0f} s")
    elapsed = time.monotonic() - started
    rows = list(
        Run.objects.filter(workflow=workflow).values_list(
            "status", "created_at", "started_at", "finished_at"
        )
    )
    done = [(c, s, f) for status, c, s, f in rows if s is not None and f is not None]
    failed = sum(1 for status, *_ in rows if status != Run.Status.SUCCEEDED)
    latencies = sorted((f - c).total_seconds() for c, _, f in done)
    if done:
        # From the first run started to the last finished: worker start-up is not counted.
        first = min(s for _, s, _ in done) if scenario.startswith("A") else min(c for c, *_ in done)
        span = (max(f for *_, f in done) - first).total_seconds()
    else:
        span = math.nan
    return Row(
        scenario=scenario,
        runs=len(done),
        rate=len(done) / span if span and span > 0 else math.nan,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        peak_polled=peak,
        peak_exact=exact_peak([(s, f) for _, s, f in done]),
        errors=submit_errors + failed + (expected - len(rows)),
        elapsed_s=elapsed,
    )


# --- Report ----------------------------------------------------------------------------


def machine_line() -> str:
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    mem_gib = int(mem.group(1)) / 1024 / 1024 if mem else math.nan
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = f" ({found.group(1).strip()})" if found else ""
    return (
        f"{os.cpu_count()} cores{model}, {mem_gib:.1f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def report(
    rows: Sequence[Row], *, started: datetime, load_before: str, command: str, pool: int | None
) -> str:
    lines = [
        f"- Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine_line()}.",
        f"- Load average at start: {load_before}.",
        f"- Command: `{command}`",
        f"- Worker: `{shlex.join(['celery', *worker_argv()[1:]])}`"
        f" (one process), settings.base, DEBUG off, psycopg pool of {pool or 10} connections"
        f"{'' if pool else ' (the default)'}, Redis broker.",
        "",
        "| scenario | runs | runs/s | p50 ms | p99 ms | peak in flight | errors |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.runs:,} | {fmt(row.rate, 1)} | {fmt(row.p50_ms)} | "
            f"{fmt(row.p99_ms)} | {row.peak_polled} | {row.errors} |"
        )
    lines += [
        "",
        "Latency is finished_at - created_at (submit to finish, queue wait included). "
        "Peak in flight is the most runs in status `running` seen by a 0.2 s poll; from the "
        "runs' own start and finish times it was "
        + ", ".join(f"{row.scenario.split(' ')[0]} {row.peak_exact}" for row in rows)
        + ". Wall time per scenario: "
        + ", ".join(f"{row.scenario.split(' ')[0]} {row.elapsed_s:.1f} s" for row in rows)
        + ".",
    ]
    return "\n".join(lines)


# --- Main ------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


def scenarios(
    args: argparse.Namespace, env: dict[str, str], worker_log: Path, user: Any
) -> list[Row]:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # no task left over from an interrupted run
    rows: list[Row] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        echo_a = published_workflow(user, "bench A pre-filled", echo_graph())
        log(f"A: queueing {args.runs} runs before the worker starts")
        errors = submit(echo_a, user, args.runs, threads=8)
        worker_env = dict(env)
        if args.worker_db_pool_size:
            worker_env["DB_POOL_MAX_SIZE"] = str(args.worker_db_pool_size)
        worker = start_worker(worker_env, worker_log)
        started = time.monotonic()
        rows.append(
            measure(
                "A pre-filled queue",
                echo_a,
                expected=args.runs,
                submit_errors=errors,
                timeout_s=args.timeout,
                started=started,
            )
        )
        wait_worker_ready(worker)

        echo_b = published_workflow(user, "bench B submitters", echo_graph())
        log(f"B: {args.submitters} threads submitting {args.runs} runs")
        started = time.monotonic()
        errors = submit(echo_b, user, args.runs, threads=args.submitters)
        log(f"  submitted in {time.monotonic() - started:.1f} s")
        label = f"B {args.submitters} concurrent submitters"
        rows.append(
            measure(
                label,
                echo_b,
                expected=args.runs,
                submit_errors=errors,
                timeout_s=args.timeout,
                started=started,
            )
        )

        sleeper = published_workflow(user, "bench C sleep", sleep_graph(args.sleep))
        log(f"C: {args.in_flight_runs} runs of a {args.sleep:g} s sleep submitted at once")
        started = time.monotonic()
        errors = submit(sleeper, user, args.in_flight_runs, threads=64)
        label = f"C in flight, {args.sleep:g} s I/O"
        rows.append(
            measure(
                label,
                sleeper,
                expected=args.in_flight_runs,
                submit_errors=errors,
                timeout_s=args.timeout,
                started=started,
            )
        )
    finally:
        if worker is not None:
            stop_worker(worker)
        if worker_log.exists():
            text = worker_log.read_text(errors="replace")
            tracebacks = text.count("Traceback")
            if tracebacks or (worker is not None and worker.returncode not in (0, None, -15)):
                log(f"worker log ({tracebacks} tracebacks), last lines:\n{text[-3000:]}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000, help="runs in scenarios A and B")
    parser.add_argument("--submitters", type=int, default=200, help="threads in scenario B")
    parser.add_argument("--in-flight-runs", type=int, default=256, help="runs in scenario C")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds per run in C")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument(
        "--worker-db-pool-size",
        type=int,
        help="DB_POOL_MAX_SIZE for the worker only (default: the settings' default, 10)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20_000 or not 1 <= args.submitters <= 500:
        parser.error("--runs must be within 1-20000 and --submitters within 1-500")
    if not 1 <= args.in_flight_runs <= 2_000 or not 0 <= args.sleep <= 10:
        parser.error("--in-flight-runs must be within 1-2000 and --sleep within 0-10")
    if not 5 <= args.timeout <= 300:
        parser.error("--timeout must be within 5-300 s")
    if args.worker_db_pool_size is not None and not 1 <= args.worker_db_pool_size <= 90:
        parser.error("--worker-db-pool-size must be within 1-90 (max_connections is 100)")

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    command = shlex.join([".venv/bin/python", "bench/workflow_runs.py", *sys.argv[1:]])
    try:
        with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "prometheus").mkdir()
            env = production_env(var_dir, redis_url=REDIS_URL)
            log("creating the database if missing, migrating")
            run_logged([sys.executable, "scripts/create_database.py", DATABASE_URL], env, 30)
            run_logged([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
            user = setup_django(env)
            rows = scenarios(args, env, var_dir / "worker.log", user)
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; worker stopped")
        return 130
    print(
        report(
            rows,
            started=started,
            load_before=load_before,
            command=command,
            pool=args.worker_db_pool_size,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
