"""HTTP throughput: gunicorn (WSGI, sync workers) against uvicorn (ASGI), on this machine.

Starts each server in turn on a free loopback port with a production-like environment, drives
it with a fixed number of keep-alive connections for a fixed time per endpoint, stops it, and
prints one Markdown table (requests/s, p50/p99 latency, errors, CPU per request) on stdout.
Progress goes to stderr. See bench/README.md.

    .venv/bin/python bench/http_servers.py [--duration 10] [--concurrency 16 64]
                                           [--client auto|wrk|aiohttp]

The load generator is ``wrk`` when it is on PATH (``--client auto``), else an aiohttp client
in this process. Either one shares the machine's cores with the server under test: the
"Client cores" column says how much of them it took. Ctrl-C or SIGTERM stops every process
the script started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DATABASE_URL,
    REPO,
    BenchError,
    log,
    percentile_ms,
    production_env,
    run_step,
)

HOST = "127.0.0.1"
REDIS_URL = "redis://127.0.0.1:6379/14"
REQUEST_TIMEOUT_S = 5.0
# Upper bound on requests per measurement, whatever the duration (aiohttp client).
MAX_REQUESTS_PER_RUN = 2_000_000
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0
SESSION_USERNAME = "bench-http"
# Set by Ctrl-C or SIGTERM: every loop stops at its next request, then the servers are stopped.
STOP = threading.Event()


@dataclass(frozen=True)
class Endpoint:
    path: str
    label: str
    authenticated: bool = False


ENDPOINTS = (
    Endpoint("/healthz", "`/healthz` (JSON, no DB)"),
    Endpoint("/admin/login/", "`/admin/login/` (template, no DB)"),
    Endpoint("/api/workflows/", "`/api/workflows/` (session, DB)", authenticated=True),
)


@dataclass(frozen=True)
class Server:
    name: str
    display: str

    def argv(self, port: int | str, workers: int) -> list[str]:
        if self.name == "gunicorn":
            return [
                *("gunicorn", "assistant_site.wsgi:application", "-w", str(workers)),
                *("--worker-class", "sync", "--bind", f"{HOST}:{port}"),
            ]
        return [
            *("uvicorn", "assistant_site.asgi:application", "--workers", str(workers)),
            *("--lifespan", "off", "--no-access-log", "--host", HOST, "--port", str(port)),
        ]


SERVERS = (
    Server("gunicorn", "gunicorn (WSGI, sync)"),
    Server("uvicorn", "uvicorn (ASGI)"),
)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class Row:
    server: Server
    endpoint: Endpoint
    concurrency: int
    result: LoadResult
    server_cpu_s: float
    machine_cpu_s: float

    @property
    def other_cores(self) -> float:
        """Cores busy with anything but the server and the client (PostgreSQL included)."""
        other = self.machine_cpu_s - self.server_cpu_s - self.result.client_cpu_s
        return max(0.0, other) / self.result.elapsed_s


# --- Environment and database ----------------------------------------------------------


_SESSION_SNIPPET = f"""
from django.contrib.auth import get_user_model
from django.test import Client
user, _ = get_user_model().objects.get_or_create(username={SESSION_USERNAME!r})
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
print("BENCH_SESSION=" + client.cookies["sessionid"].value)
"""


def prepare(env: dict[str, str]) -> str:
    """Creates and migrates the bench database, collects static files; returns a session id."""
    python = sys.executable
    (Path(env["VAR_DIR"]) / "prometheus").mkdir(parents=True, exist_ok=True)
    log("creating the database if missing, migrating, collecting static files")
    out = run_step([python, "scripts/create_database.py", DATABASE_URL], env, 30)
    if out.strip():
        log(out.strip())
    run_step([python, "manage.py", "migrate", "--noinput", "--verbosity", "0"], env)
    run_step([python, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], env)
    out = run_step([python, "manage.py", "shell", "--command", _SESSION_SNIPPET], env)
    match = re.search(r"^BENCH_SESSION=(\w+)$", out, re.MULTILINE)
    if not match:
        raise BenchError(f"no session id in manage.py shell output: {out[-500:]!r}")
    return match.group(1)


# --- Server processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_tree_cpu_s(root_pid: int) -> float:
    """User + system CPU seconds of root_pid and all its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for pid, seconds in cpu.items():
        walk = pid
        while walk > 1 and walk != root_pid:
            walk = parents.get(walk, 0)
        if walk == root_pid:
            total += seconds
    return total


def machine_busy_cpu_s() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(SERVER_STOP_TIMEOUT_S)
    # Workers that outlived their master would still be in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_until_serving(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    url = f"http://{HOST}:{port}/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"server exited with {proc.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise BenchError(f"server not answering {url} after {SERVER_START_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def running_server(
    server: Server, port: int, workers: int, env: dict[str, str], log_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    argv = server.argv(port, workers)
    log_path = log_dir / f"{server.name}.log"
    log(f"starting {shlex.join(argv)}")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole, even on Ctrl-C
        )
    try:
        wait_until_serving(proc, port, log_path)
        yield proc
    finally:
        log(f"stopping {server.name}")
        stop_process_group(proc)


# --- Load generators -------------------------------------------------------------------


async def _aiohttp_load(
    url: str, concurrency: int, duration_s: float, headers: dict[str, str]
) -> tuple[list[float], int, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    budget = MAX_REQUESTS_PER_RUN
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        cookie_jar=aiohttp.DummyCookieJar(),  # like wrk: no cookies kept between requests
    ) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def one_connection() -> None:
            nonlocal errors, budget
            while budget > 0 and not STOP.is_set() and time.perf_counter() < deadline:
                budget -= 1
                sent = time.perf_counter()
                try:
                    async with session.get(url, allow_redirects=False) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def load_aiohttp(
    url: str, concurrency: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    cpu_before = time.process_time()
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        latencies, errors, elapsed = runner.run(
            _aiohttp_load(url, concurrency, duration_s, headers)
        )
    if STOP.is_set():
        raise KeyboardInterrupt
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        elapsed_s=elapsed,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        client_cpu_s=time.process_time() - cpu_before,
    )


_WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _wrk_latency_ms(output: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * _WRK_UNITS_MS[match.group(2)] if match else math.nan


def parse_wrk(output: str, client_cpu_s: float) -> LoadResult:
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.MULTILINE)
    if not total:
        raise BenchError(f"unexpected wrk output:\n{output}")
    elapsed_s = float(total.group(2)) * _WRK_UNITS_MS[total.group(3)] / 1000.0
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(count) for count in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    # wrk counts every completed response as a request, good or bad.
    return LoadResult(
        requests=max(0, int(total.group(1)) - (int(non_2xx.group(1)) if non_2xx else 0)),
        errors=errors,
        elapsed_s=elapsed_s,
        p50_ms=_wrk_latency_ms(output, "50"),
        p99_ms=_wrk_latency_ms(output, "99"),
        client_cpu_s=client_cpu_s,
    )


def load_wrk(
    wrk: str, url: str, concurrency: int, duration_s: int, headers: dict[str, str]
) -> LoadResult:
    argv = [
        wrk,
        *("--threads", str(min(concurrency, os.cpu_count() or 1))),
        *("--connections", str(concurrency), "--duration", f"{duration_s}s"),
        *("--timeout", f"{REQUEST_TIMEOUT_S:g}s", "--latency"),
    ]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    before = os.times()
    completed = subprocess.run(
        [*argv, url],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=False,
    )
    after = os.times()
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-2000:]
        raise BenchError(f"{shlex.join(argv)} exited {completed.returncode}: {output}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return parse_wrk(completed.stdout, cpu)


# --- Report ----------------------------------------------------------------------------


def machine_lines() -> list[str]:
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    mem_gib = int(mem.group(1)) / 1024 / 1024 if mem else math.nan
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = f" ({found.group(1).strip()})" if found else ""
    return [
        f"- Machine: {os.cpu_count()} cores{model}, {mem_gib:.1f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    ]


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def format_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def report(
    rows: Sequence[Row],
    *,
    client: str,
    workers: int,
    duration_s: float,
    started: datetime,
    load_before: str,
) -> str:
    lines = [
        "| Server | Endpoint | Connections | Requests/s | p50 ms | p99 ms | Errors "
        "| Server CPU ms/req | Client cores | Other cores |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        result = row.result
        cpu_per_req = row.server_cpu_s * 1000 / result.requests if result.requests else math.nan
        lines.append(
            f"| {row.server.display} | {row.endpoint.label} | {row.concurrency} "
            f"| {result.rate:,.0f} | {format_ms(result.p50_ms)} | {format_ms(result.p99_ms)} "
            f"| {result.errors} | {format_ms(cpu_per_req)} "
            f"| {result.client_cpu_s / result.elapsed_s:.2f} | {row.other_cores:.2f} |"
        )
    servers = "; ".join(f"`{shlex.join(server.argv('PORT', workers))}`" for server in SERVERS)
    lines += [
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *machine_lines(),
        f"- Load average before the run (1, 5, 15 min): {load_before}",
        f"- Command: `{shlex.join(sys.orig_argv)}` (in {REPO})",
        f"- Servers: {servers}",
        f"- Versions: Django {version('django')}, gunicorn {version('gunicorn')}, "
        f"uvicorn {version('uvicorn')}, psycopg {version('psycopg')}",
        f"- Load generator: {client}; {duration_s:g} s per row after a warm-up, keep-alive, "
        f"{REQUEST_TIMEOUT_S:g} s request timeout; errors are non-200 answers, timeouts and "
        "socket errors.",
        "- Environment: settings.base, DEBUG off, PostgreSQL with the psycopg pool "
        "(DB_POOL=true), Redis cache, LOG_LEVEL=WARNING, no access log; "
        "`/api/workflows/` carries a logged-in user's session cookie (session, user and "
        "permission queries, an empty page); `/admin/login/` is an anonymous GET.",
        "- Server CPU ms/req: CPU time of the server's processes during the row divided by "
        "its requests. Client cores: CPU the load generator itself used, in cores. Other cores: "
        "the rest of the machine's busy CPU during the row (PostgreSQL and Redis, and any "
        "unrelated load: above about 0.1 on the rows without a database, the run was noisy).",
    ]
    return "\n".join(lines)


# --- Main ------------------------------------------------------------------------------


def pick_client(choice: str) -> tuple[str, str | None]:
    wrk = shutil.which("wrk")
    if choice == "wrk" and not wrk:
        raise BenchError("--client wrk: no wrk on PATH")
    if choice in {"auto", "wrk"} and wrk:
        probe = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        first = (probe.stdout or probe.stderr).strip().splitlines()[:1]
        label = first[0].split(" Copyright")[0] if first else "wrk"
        return (f"{label} at {wrk}, {os.cpu_count() or 1} threads", wrk)
    return (f"aiohttp {version('aiohttp')} client in the benchmark process (wrk not on PATH)", None)


def measure(
    wrk: str | None,
    url: str,
    concurrency: int,
    duration_s: int,
    headers: dict[str, str],
) -> LoadResult:
    if wrk:
        return load_wrk(wrk, url, concurrency, duration_s, headers)
    return load_aiohttp(url, concurrency, duration_s, headers)


def bench_server(
    server: Server,
    *,
    args: argparse.Namespace,
    env: dict[str, str],
    session_id: str,
    wrk: str | None,
    log_dir: Path,
) -> list[Row]:
    rows: list[Row] = []
    port = free_port()
    with running_server(server, port, args.workers, env, log_dir) as proc:
        for endpoint in ENDPOINTS:
            url = f"http://{HOST}:{port}{endpoint.path}"
            headers = {"Cookie": f"sessionid={session_id}"} if endpoint.authenticated else {}
            warm = measure(wrk, url, min(args.concurrency), args.warmup, headers)
            if warm.requests == 0:
                raise BenchError(f"{server.name} {endpoint.path}: no successful warm-up request")
            for concurrency in args.concurrency:
                cpu_before, busy_before = process_tree_cpu_s(proc.pid), machine_busy_cpu_s()
                result = measure(wrk, url, concurrency, args.duration, headers)
                busy = machine_busy_cpu_s() - busy_before
                cpu = process_tree_cpu_s(proc.pid) - cpu_before
                log(
                    f"{server.name:8} {endpoint.path:16} c={concurrency:<3} "
                    f"{result.rate:8,.0f} req/s  p50 {format_ms(result.p50_ms)} ms  "
                    f"p99 {format_ms(result.p99_ms)} ms  errors {result.errors}"
                )
                rows.append(Row(server, endpoint, concurrency, result, cpu, busy))
    return rows


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Our own handler also keeps asyncio.Runner from installing its SIGINT handler, which
    # only cancels the running load loop (and aiohttp can swallow that cancellation).
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--client", choices=["auto", "wrk", "aiohttp"], default="auto")
    parser.add_argument("--only", choices=[server.name for server in SERVERS], action="append")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.warmup <= 10:
        parser.error("--duration must be within 1-60 s and --warmup within 1-10 s")
    if any(not 1 <= c <= 1024 for c in args.concurrency):
        parser.error("--concurrency must be within 1-1024")

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    client, wrk = pick_client(args.client)
    log(f"load generator: {client}")
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
            var_dir = Path(tmp)
            env = production_env(var_dir, redis_url=REDIS_URL)
            session_id = prepare(env)
            for server in SERVERS:
                if args.only and server.name not in args.only:
                    continue
                rows += bench_server(
                    server, args=args, env=env, session_id=session_id, wrk=wrk, log_dir=var_dir
                )
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    print(
        report(
            rows,
            client=client,
            workers=args.workers,
            duration_s=args.duration,
            started=started,
            load_before=load_before,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
