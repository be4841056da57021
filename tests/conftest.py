"""Shared fixtures: users with roles, an owner/collaborator pair, API clients, and real
services (PostgreSQL, Redis, a private Redis, a Chroma server) that fail under CI=true
instead of skipping."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from assistant_site.roles import user_roles_set

ON_CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parent.parent


def require_service(available: bool, what: str) -> None:
    """Skip a test whose service is missing, except on CI, where that is a failure."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"CI=true and {what} is not available")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def database_now() -> Any:
    """PostgreSQL's clock: pass it to :func:`close_sessions_since` after a worker test."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def close_sessions_since(since: Any) -> None:
    """End the database sessions an in-process Celery worker left behind.

    The worker's threads are gone but their sessions stay open until collected, which would
    keep the test database from being dropped. Only sessions opened since ``since``: older
    ones belong to this process's other threads (asgiref's executor), which would find them
    killed in a later test.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_start >= %s",
            [since],
        )


@pytest.fixture
def postgres(db: None) -> None:
    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")


@pytest.fixture
def redis_url() -> str:
    require_service(bool(settings.REDIS_URL), "Redis (REDIS_URL)")
    url: str = settings.REDIS_URL
    return url


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, roles: tuple[str, ...] = (), **extra: Any) -> Any:
        name = username or f"user{next(counter)}"
        user = get_user_model().objects.create_user(
            username=name, password="correct horse battery", **extra
        )
        if roles:
            user_roles_set(user=user, roles=list(roles))
        return user

    return make


@pytest.fixture
def owner(make_user: Callable[..., Any]) -> Any:
    from assistant_site.roles import DESIGNER

    return make_user("owner", roles=(DESIGNER,))


@pytest.fixture
def collaborator(make_user: Callable[..., Any]) -> Any:
    from assistant_site.roles import DESIGNER

    return make_user("collaborator", roles=(DESIGNER,))


@pytest.fixture
def api_client_for() -> Callable[[Any], APIClient]:
    def make(user: Any) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of the test's own on a free port, which the test may stop."""
    binary = shutil.which("redis-server")
    require_service(binary is not None, "redis-server")
    assert binary is not None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chroma server on a free loopback port, as the run command starts one."""
    binary = Path(sys.executable).parent / "chroma"
    require_service(binary.exists(), "the chroma command (chromadb package)")
    port = free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "run",
            "--path",
            str(tmp_path_factory.mktemp("chroma")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


if TYPE_CHECKING:
    from tests.doubles.vllm_server import VllmDouble


@pytest.fixture
def vllm_double() -> Iterator[VllmDouble]:
    """A started protocol double of vLLM's OpenAI-compatible server (not a model) on a
    free loopback port; ``base_url`` is what an OpenAI client takes. Stopped afterwards."""
    from tests.doubles.vllm_server import VllmDouble

    with VllmDouble() as double:
        yield double
