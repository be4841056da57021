"""Container health checks for each Assistant Studio process (the image's HEALTHCHECK and
deploy/docker-compose.yml). Exit status 0: healthy, 1: not; one line says why.

    healthcheck.py               the check of the process this container runs (its PID 1)
    healthcheck.py web           GET /healthz on $PORT (gunicorn, HTTP)
    healthcheck.py ws            GET /healthz on $PORT (uvicorn, WebSockets: it answers HTTP too)
    healthcheck.py chroma        GET /api/v2/heartbeat on $CHROMA_PORT
    healthcheck.py worker QUEUE  the Celery worker QUEUE@<hostname> answers a ping
    healthcheck.py beat          beat sent a periodic task in the last BEAT_MAX_SILENCE_S
    healthcheck.py listener      PID 1 is connectors_poll and the database answers

Kubernetes probes web, ws and Chroma with httpGet and runs this script for the others.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

# The application's code (assistant_site, Django settings) for the worker, beat and listener
# checks: Python puts this script's folder on sys.path, not the repository root.
APP_DIR = Path(__file__).resolve().parents[2]
TIMEOUT_S = 5.0
# The two built-in periodic tasks run every 30 s; django-celery-beat writes last_run_at at
# its first send and then every 3 minutes (sync_every), so 6 minutes of silence means stuck.
BEAT_MAX_SILENCE_S = 360


class UnhealthyError(Exception):
    """The check failed; the message says how."""


def probe_host() -> str:
    """A Host header Django accepts: the first concrete DJANGO_ALLOWED_HOSTS entry.

    CommonMiddleware answers 400 to any other host, and the container's own address is not
    on the list in production."""
    for entry in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(","):
        host = entry.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def check_http(url: str, host: str | None = None) -> str:
    # The URL is built here, always http://127.0.0.1: no scheme or host comes from outside.
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            status: int = response.status
    except urllib.error.HTTPError as exc:
        raise UnhealthyError(f"{url} answered {exc.code}") from exc
    except OSError as exc:
        raise UnhealthyError(f"{url}: {exc}") from exc
    return f"{url} answered {status}"


def check_web() -> str:
    """gunicorn (`web`) or uvicorn (`ws`): both serve Django's /healthz on $PORT."""
    return check_http(f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz", probe_host())


def check_chroma() -> str:
    return check_http(f"http://127.0.0.1:{os.environ.get('CHROMA_PORT', '8000')}/api/v2/heartbeat")


def check_worker(queue: str) -> str:
    from assistant_site.celery import app

    # The entry point names workers QUEUE@%h, and %h is this host name.
    node = f"{queue}@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=TIMEOUT_S) or []
    if not any(node in reply for reply in replies):
        raise UnhealthyError(f"worker {node} did not answer a ping within {TIMEOUT_S:g} s")
    return f"worker {node} answered"


def check_beat() -> str:
    import datetime

    import django

    django.setup()
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    since = timezone.now() - datetime.timedelta(seconds=BEAT_MAX_SILENCE_S)
    if not PeriodicTask.objects.filter(enabled=True, last_run_at__gte=since).exists():
        raise UnhealthyError(f"beat sent no periodic task in the last {BEAT_MAX_SILENCE_S} s")
    return "beat sent periodic tasks recently"


def check_listener() -> str:
    command = pid1_command()
    if command and not any(part.endswith("connectors_poll") for part in command):
        raise UnhealthyError(f"PID 1 is not connectors_poll: {' '.join(command)}")
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()
    return "connectors_poll runs and the database answers"


def pid1_command() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check_for_command(command: Sequence[str]) -> list[str]:
    """The check arguments for a process started as ``command`` ([] when it has none:
    migrate, init and other one-shot commands)."""
    names = [Path(part).name for part in command]
    # gunicorn is the `web` process (HTTP), uvicorn the `ws` one (WebSockets).
    for program, check in (("gunicorn", "web"), ("uvicorn", "ws"), ("connectors_poll", "listener")):
        if program in names:
            return [check]
    if "celery" in names:
        if "beat" in names:
            return ["beat"]
        if "worker" in names and "-Q" in names[:-1]:
            return ["worker", names[names.index("-Q") + 1]]
    if "chroma" in names and "run" in names:
        return ["chroma"]
    return []


CHECKS: dict[str, Callable[..., str]] = {
    "web": check_web,
    "ws": check_web,
    "chroma": check_chroma,
    "worker": check_worker,
    "beat": check_beat,
    "listener": check_listener,
}


def main(argv: Sequence[str]) -> int:
    args = list(argv) or check_for_command(pid1_command())
    if not args:
        sys.stdout.write("healthy: this process has no health check (a one-shot command)\n")
        return 0
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    check = CHECKS.get(args[0])
    if check is None:
        sys.stderr.write(f"unknown check {args[0]!r}; one of: {', '.join(CHECKS)}\n")
        return 2
    try:
        detail = check(*args[1:])
    except Exception as exc:  # any failure is an unhealthy answer, never a traceback
        sys.stdout.write(f"unhealthy: {exc}\n")
        return 1
    sys.stdout.write(f"healthy: {detail}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
