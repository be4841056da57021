"""What the benchmark scripts share: the production-like environment and small helpers."""

from __future__ import annotations

import math
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/assistant_studio_bench"


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def production_env(var_dir: Path, *, redis_url: str) -> dict[str, str]:
    """The settings a deployment runs with, on the bench database and the given Redis."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    for key in (
        "DATABASE_URL",
        "REDIS_URL",
        "CHROMA_URL",
        "DB_POOL",
        "DB_POOL_MAX_SIZE",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
    ):
        env.pop(key, None)
    env.update(
        DJANGO_SETTINGS_MODULE="assistant_site.settings.base",
        DJANGO_DEBUG="false",
        DJANGO_HTTPS="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        LOG_LEVEL="WARNING",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=redis_url,
        DB_POOL="true",
        # Collected static files (the admin's template needs the manifest) and the
        # Prometheus multiprocess folder that the run command and deployments set.
        VAR_DIR=str(var_dir),
        PROMETHEUS_MULTIPROC_DIR=str(var_dir / "prometheus"),
        PYTHONUNBUFFERED="1",
    )
    return env


def setup_django(env: dict[str, str], username: str) -> Any:
    """Points this process at the benchmark's settings and database (``env`` replaces the
    environment); answers the benchmark's user, created if missing."""
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username)
    return user


def prepare_database(env: dict[str, str], timeout_s: float = 300.0) -> None:
    """Creates the benchmark's database if missing and migrates it."""
    log("creating the database if missing, migrating")
    run_step([sys.executable, "scripts/create_database.py", env["DATABASE_URL"]], env, 30)
    run_step([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env, timeout_s)


def run_step(argv: Sequence[str], env: dict[str, str], timeout_s: float = 120.0) -> str:
    completed = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if completed.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} exited {completed.returncode}:\n{completed.stderr[-3000:]}"
        )
    return completed.stdout


def percentile_ms(sorted_s: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not sorted_s:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_s)))
    return sorted_s[rank - 1] * 1000.0


def log_tracebacks(path: Path) -> str:
    """Counts the tracebacks in a server or worker log; prints its tail when there are any.
    Answers a note for the report ("" when none)."""
    if not path.exists():
        return ""
    text = path.read_text(errors="replace")
    count = text.count("Traceback")
    if count:
        log(f"{path.name}: {count} tracebacks, last lines:\n{text[-4000:]}")
        return f"{count} tracebacks in {path.name} (tail on stderr)."
    return ""
