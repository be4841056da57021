"""What `manage.py check_env` checks: the host (Python, Node.js, a GPU, disk space), the
services (database, Redis, the Celery broker, Chroma, every enabled model endpoint) and the
built editor bundle. Each check answers rows of status, detail and, when something is wrong,
what to do about it.

The service checks are those of `/readyz` (``assistant_site.checks``); model endpoints are
probed as the admin's "probe" action does (``Gateway.probe``), without storing the result.
Checks run in threads at once, and a check that does not answer within its timeout (plus a
second's grace) is reported as such: the command never waits longer than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, connections
from django.urls import reverse

from assistant_site.checks import (
    NOT_CONFIGURED,
    broker_check,
    chroma_check,
    database_check,
    mask_secrets,
    redis_check,
    service_address,
)

if TYPE_CHECKING:
    from workflows.llm.endpoints import EndpointConfig

GB = 1000**3
MIN_PYTHON = (3, 11)
MIN_NODE = 20
DISK_FAIL_BYTES = 1 * GB
DISK_WARN_BYTES = 5 * GB
DISK_WARN_FRACTION = 0.10
DEFAULT_TIMEOUT_S = 5.0
GRACE_S = 1.0

# shutil.disk_usage, here so that tests can pretend a disk is full.
disk_usage = shutil.disk_usage


class Status(enum.StrEnum):
    OK = "OK"
    INFO = "INFO"  # worth knowing, nothing to fix
    WARN = "WARN"  # works, with a limitation the detail names
    FAIL = "FAIL"  # does not work: the fix says what to do


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    detail: str
    fix: str = ""
    ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "detail": self.detail,
            "fix": self.fix,
            "ms": round(self.ms, 1),
        }


@dataclass(frozen=True)
class _Check:
    name: str
    run: Callable[[float], list[Result]]
    fix: str  # for an unexpected error or no answer in time
    optional: bool = False  # such a failure is a WARN: the product works without it


# --- the host ----------------------------------------------------------------------------


def _python(timeout: float) -> list[Result]:
    version = platform.python_version()
    where = sys.executable
    if sys.version_info >= MIN_PYTHON:
        return [Result("python", Status.OK, f"{version} ({where})")]
    return [
        Result(
            "python",
            Status.FAIL,
            f"{version} ({where}): 3.11 or newer is needed",
            "install Python 3.11 or newer, then recreate the environment: "
            "rm -rf .venv && bash scripts/run.sh",
        )
    ]


def _bundle_built() -> bool:
    from frontend.assets import manifest_path

    return manifest_path().is_file()


def _command_version(command: list[str], timeout: float) -> str | None:
    """The first line a ``--version`` command prints; None when it is not installed."""
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(  # noqa: S603  (a fixed command line, no shell)
        command, capture_output=True, text=True, timeout=timeout, check=True
    )
    return (done.stdout.strip().splitlines() or ["?"])[0]


_NODE_FIX = (
    "install Node.js 20 or newer with npm (apt-get install nodejs npm, or nodesource.com); "
    "then build the bundle: cd frontend && npm ci && npm run build"
)


def _node(timeout: float) -> list[Result]:
    try:
        version = _command_version(["node", "--version"], timeout)
    except (subprocess.SubprocessError, OSError) as exc:
        return [_frontend_tool_missing("node", f"node --version failed ({type(exc).__name__})")]
    match = re.match(r"v?(\d+)", version or "")
    if match and int(match.group(1)) >= MIN_NODE:
        return [Result("node", Status.OK, f"Node.js {version}")]
    problem = f"Node.js {version} is too old" if version else "Node.js (node) not found"
    return [_frontend_tool_missing("node", f"{problem}: 20 or newer builds the editor bundle")]


def _npm(timeout: float) -> list[Result]:
    try:
        version = _command_version(["npm", "--version"], timeout)
    except (subprocess.SubprocessError, OSError) as exc:
        return [_frontend_tool_missing("npm", f"npm --version failed ({type(exc).__name__})")]
    if version:
        return [Result("npm", Status.OK, f"npm {version}")]
    return [_frontend_tool_missing("npm", "npm not found: it installs the editor's packages")]


def _frontend_tool_missing(name: str, problem: str) -> Result:
    if _bundle_built():
        return Result(
            name,
            Status.WARN,
            f"{problem}; the bundle is built already, so only a rebuild needs it",
            _NODE_FIX,
        )
    return Result(name, Status.FAIL, f"{problem}, and the bundle is not built", _NODE_FIX)


def _gpu(timeout: float) -> list[Result]:
    if shutil.which("nvidia-smi") is None:
        return [
            Result(
                "gpu",
                Status.INFO,
                "no nvidia-smi: no NVIDIA GPU here (optional: model servers are reached over "
                "HTTP and may run on another host)",
            )
        ]
    done = subprocess.run(
        ["nvidia-smi", "-L"],  # noqa: S607  (found on PATH above)
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    gpus = [line.split(" (UUID")[0] for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not gpus:
        reason = (done.stderr or done.stdout).strip().splitlines() or ["no GPU listed"]
        return [
            Result(
                "gpu",
                Status.WARN,
                f"nvidia-smi -L failed: {reason[0]}",
                "only if a model server should run on this host: check the NVIDIA driver "
                "(nvidia-smi) and the container's GPU access",
            )
        ]
    return [Result("gpu", Status.INFO, f"{len(gpus)} visible: {'; '.join(gpus)}")]


def _volume_of(path: Path) -> Path:
    """The path itself, or its nearest existing parent (a fresh install has no var/ yet)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(timeout: float) -> list[Result]:
    places: dict[int, list[Path]] = {}
    for setting in ("VAR_DIR", "MEDIA_ROOT"):
        path = Path(getattr(settings, setting))
        places.setdefault(_volume_of(path).stat().st_dev, []).append(path)
    rows = []
    for paths in places.values():
        name = "disk" if len(places) == 1 else f"disk {paths[0]}"
        usage = disk_usage(_volume_of(paths[0]))
        free, total = usage.free, usage.total
        share = free / total if total else 0.0
        detail = (
            f"{free / GB:.1f} GB free of {total / GB:.1f} GB ({share:.0%}) on the volume of "
            f"{', '.join(str(path) for path in paths)}"
        )
        fix = (
            "free space on that volume (old uploads, logs, images) or move VAR_DIR to a larger disk"
        )
        if free < DISK_FAIL_BYTES:
            rows.append(Result(name, Status.FAIL, f"{detail}: under 1 GB", fix))
        elif free < DISK_WARN_BYTES or share < DISK_WARN_FRACTION:
            rows.append(Result(name, Status.WARN, f"{detail}: under 5 GB or 10 %", fix))
        else:
            rows.append(Result(name, Status.OK, detail))
    return rows


def _bundle(timeout: float) -> list[Result]:
    from frontend.assets import ENTRY_SOURCES, BundleMissingError, manifest, manifest_path

    fix = "cd frontend && npm ci && npm run build (scripts/run.sh does)"
    try:
        chunks = manifest()
    except BundleMissingError:
        return [Result("frontend bundle", Status.FAIL, f"not built: {manifest_path()}", fix)]
    missing = sorted(entry for entry, source in ENTRY_SOURCES.items() if source not in chunks)
    if missing:
        return [
            Result(
                "frontend bundle",
                Status.FAIL,
                f"out of date: no {', '.join(missing)} entry in the manifest",
                fix,
            )
        ]
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(manifest_path().stat().st_mtime))
    return [Result("frontend bundle", Status.OK, f"built {built} ({settings.FRONTEND_DIST})")]


# --- the services --------------------------------------------------------------------------


def _database(timeout: float) -> list[Result]:
    database_check(timeout)
    vendor = connection.vendor
    db = settings.DATABASES["default"]
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = str(cursor.fetchone()[0]).split()[0]
        where = f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
        row = Result("database", Status.OK, f"PostgreSQL {version} at {where}")
    elif vendor == "sqlite":
        row = Result(
            "database",
            Status.WARN,
            f"SQLite {sqlite3.sqlite_version} at {db.get('NAME')}: one writer at a time, for a "
            "try-out",
            "for production set DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/NAME "
            "(scripts/create_database.py creates the database)",
        )
    else:
        row = Result("database", Status.WARN, f"{vendor}: not a tested database", "use PostgreSQL")
    unapplied = _unapplied_migrations()
    if unapplied:
        row = dataclasses.replace(
            row,
            status=Status.WARN,
            detail=f"{row.detail}; {unapplied} migrations not applied",
            fix="python manage.py migrate (the run command does)"
            + (f"; {row.fix}" if row.fix else ""),
        )
    return [row]


def _unapplied_migrations() -> int:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def _redis(timeout: float) -> list[Result]:
    detail = redis_check(timeout)
    if detail.startswith(NOT_CONFIGURED):
        return [
            Result(
                "redis",
                Status.WARN,
                f"{detail}: WebSockets work within one process only",
                "set REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run several processes",
            )
        ]
    return [Result("redis", Status.OK, f"reachable at {service_address(settings.REDIS_URL)}")]


def _broker(timeout: float) -> list[Result]:
    detail = broker_check(timeout)
    if detail.startswith(NOT_CONFIGURED):
        return [
            Result(
                "celery broker",
                Status.WARN,
                f"{detail}: runs and ingestion hold up web requests",
                "set REDIS_URL (or CELERY_BROKER_URL) and run the Celery workers",
            )
        ]
    address = service_address(settings.CELERY_BROKER_URL)
    return [Result("celery broker", Status.OK, f"reachable at {address}")]


def _chroma(timeout: float) -> list[Result]:
    detail = chroma_check(timeout)
    if detail.startswith(NOT_CONFIGURED):
        return [
            Result(
                "chroma",
                Status.WARN,
                f"{detail}: knowledge bases cannot be indexed or searched",
                "set CHROMA_URL=http://127.0.0.1:8001 and run a Chroma server (scripts/run.sh "
                "starts one)",
            )
        ]
    address = service_address(settings.CHROMA_URL)
    return [Result("chroma", Status.OK, f"heartbeat answered at {address}")]


def _endpoint_checks(timeout: float) -> list[_Check]:
    """One check per enabled model endpoint (read from the database in this thread)."""
    from workflows.models import ModelEndpoint
    from workflows.services import endpoint_config

    checks = []
    for endpoint in ModelEndpoint.objects.filter(enabled=True).order_by("name"):
        admin = reverse("admin:workflows_modelendpoint_change", args=[endpoint.pk])
        fix = (
            f"start the model server at {endpoint.base_url} (deploy/vllm/README.md), or "
            f"correct the endpoint's base URL, model or key, or disable it: {admin}"
        )
        try:
            config = dataclasses.replace(
                endpoint_config(endpoint), timeout_s=min(endpoint.timeout_s, timeout)
            )
        except Exception as exc:  # a key that no configured SECRETS_KEYS key decrypts
            name = f"model {endpoint.name}"
            unreadable = f"its settings cannot be read: {_reason(exc)}"
            checks.append(_Check(name, _broken(name, unreadable, fix), fix))
            continue
        checks.append(_Check(f"model {endpoint.name}", _prober(config, fix), fix))
    return checks


def _broken(name: str, reason: str, fix: str) -> Callable[[float], list[Result]]:
    def fail(timeout: float) -> list[Result]:
        return [Result(name, Status.FAIL, reason, fix)]

    return fail


def _prober(config: EndpointConfig, fix: str) -> Callable[[float], list[Result]]:
    from workflows.llm.gateway import gateway

    def probe(timeout: float) -> list[Result]:
        # /models, then /health: the admin's probe, bounded as a whole, its result not stored.
        result = asyncio.run(asyncio.wait_for(gateway.probe(config), timeout))
        name = f"model {config.name}"
        where = f"{config.model} at {config.base_url}"
        if not result.ok:
            return [Result(name, Status.FAIL, f"{where}: {result.error}", fix)]
        detail = f"{where} answered in {result.latency_ms:.0f} ms (/health: {result.health})"
        return [Result(name, Status.OK, detail)]

    return probe


_NO_ENDPOINT = Result(
    "model endpoints",
    Status.WARN,
    "none enabled: LLM nodes cannot answer (the Q&A demo answers with the passages it found)",
    "register one: manage.py load_models deploy/models.yaml (docs/llm.md), or in the admin",
)

_CHECKS = [
    _Check(
        "python", _python, "install Python 3.11 or newer, then: rm -rf .venv && bash scripts/run.sh"
    ),
    _Check("node", _node, _NODE_FIX),
    _Check("npm", _npm, _NODE_FIX),
    _Check("gpu", _gpu, "check the NVIDIA driver (nvidia-smi)", optional=True),
    _Check(
        "database",
        _database,
        "start PostgreSQL or correct DATABASE_URL (scripts/create_database.py creates a "
        "missing database)",
    ),
    _Check(
        "redis",
        _redis,
        "start Redis (apt-get install redis-server) or correct REDIS_URL",
    ),
    _Check(
        "celery broker",
        _broker,
        "start the broker (Redis) or correct CELERY_BROKER_URL / REDIS_URL",
    ),
    _Check(
        "chroma",
        _chroma,
        "start Chroma (.venv/bin/chroma run --path var/chroma --port 8001; scripts/run.sh "
        "does) or correct CHROMA_URL",
    ),
    _Check("disk", _disk, "check that VAR_DIR and MEDIA_ROOT are readable"),
    _Check("frontend bundle", _bundle, "cd frontend && npm ci && npm run build"),
]


# --- running them --------------------------------------------------------------------------


@dataclass
class _Running:
    check: _Check
    thread: threading.Thread
    deadline: float
    rows: list[Result] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    """The exception's type and the first line of its message (a row is one line)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _failed(check: _Check, detail: str) -> Result:
    return Result(check.name, Status.WARN if check.optional else Status.FAIL, detail, check.fix)


def _start(check: _Check, timeout: float) -> _Running:
    running: _Running

    def target() -> None:
        started = time.perf_counter()
        try:
            rows = check.run(timeout)
        except subprocess.CalledProcessError as exc:
            rows = [_failed(check, f"{' '.join(exc.cmd)} exited with {exc.returncode}")]
        except (subprocess.TimeoutExpired, TimeoutError):
            rows = [_failed(check, f"no answer within {timeout:g} s")]
        except Exception as exc:  # the check failed: its reason is the detail
            rows = [_failed(check, _reason(exc))]
        finally:
            connections.close_all()  # this thread's own connections
        ms = (time.perf_counter() - started) * 1000
        running.rows = [dataclasses.replace(row, ms=ms) for row in rows]

    # Daemon threads: a check stuck past its deadline must not keep the command alive.
    thread = threading.Thread(target=target, name=f"check_env {check.name}", daemon=True)
    running = _Running(check, thread, time.monotonic() + timeout + GRACE_S)
    thread.start()
    return running


def _finish(running: _Running, timeout: float) -> list[Result]:
    running.thread.join(max(0.0, running.deadline - time.monotonic()))
    if running.thread.is_alive():
        return [
            dataclasses.replace(
                _failed(running.check, f"no answer within {timeout:g} s"), ms=timeout * 1000
            )
        ]
    return running.rows


def _masked(row: Result) -> Result:
    return dataclasses.replace(row, detail=mask_secrets(row.detail), fix=mask_secrets(row.fix))


def run_checks(*, timeout: float = DEFAULT_TIMEOUT_S) -> list[Result]:
    """Every check's rows, in a fixed order. All run at once; the model endpoints are listed
    once the database has answered (from this thread, which may be inside a transaction)."""
    started = {check.name: _start(check, timeout) for check in _CHECKS}
    database = _finish(started["database"], timeout)
    endpoint_rows: list[Result] = []
    endpoint_runs: list[_Running] = []
    if any(row.status == Status.FAIL for row in database):
        endpoint_rows = [
            # The database's row fails already; these are unknown, not broken.
            Result(
                "model endpoints",
                Status.WARN,
                "not checked: the database does not answer",
                "fix the database first",
            )
        ]
    else:
        try:
            endpoint_runs = [_start(check, timeout) for check in _endpoint_checks(timeout)]
        except Exception as exc:  # not migrated yet, most likely
            endpoint_rows = [
                Result(
                    "model endpoints",
                    Status.WARN,
                    f"not checked: they cannot be listed ({_reason(exc)})",
                    "python manage.py migrate",
                )
            ]
        else:
            endpoint_rows = [] if endpoint_runs else [_NO_ENDPOINT]
    rows: list[Result] = []
    for name, running in started.items():
        rows.extend(database if name == "database" else _finish(running, timeout))
        if name == "chroma":
            rows.extend(endpoint_rows)
            for endpoint in endpoint_runs:
                rows.extend(_finish(endpoint, timeout))
    return [_masked(row) for row in rows]
