"""`manage.py check_env` against the real services: PostgreSQL, Redis (cache and broker), a
Chroma server and the vLLM protocol double; its exit status, JSON, masking and thresholds."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from assistant_site import environment
from assistant_site.environment import GB, Status
from frontend.assets import ENTRY_SOURCES
from tests.conftest import free_port
from tests.doubles.vllm_server import VllmDouble
from workflows.models import ModelEndpoint


def _endpoint(name: str, base_url: str, model: str, **extra: Any) -> ModelEndpoint:
    return ModelEndpoint.objects.create(
        name=name, kind="chat", base_url=base_url, model=model, timeout_s=10, **extra
    )


def _run(*args: str) -> tuple[str, int]:
    """The command's output and exit status."""
    out = StringIO()
    try:
        call_command("check_env", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def _usage(*, total: float, free: float) -> SimpleNamespace:
    """What shutil.disk_usage answers, in bytes."""
    return SimpleNamespace(total=int(total), used=int(total - free), free=int(free))


def _rows(output: str) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(output)["checks"]}


@pytest.fixture
def built_bundle(settings: Settings, tmp_path: Path) -> Path:
    """A frontend build of every entry, whether or not frontend/dist is built on this host."""
    manifest = tmp_path / "dist" / ".vite" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    chunks = {source: {"file": f"assets/{entry}.js"} for entry, source in ENTRY_SOURCES.items()}
    manifest.write_text(json.dumps(chunks), encoding="utf-8")
    settings.FRONTEND_DIST = tmp_path / "dist"
    return manifest


@pytest.fixture
def roomy_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        environment, "disk_usage", lambda path: _usage(total=500 * GB, free=400 * GB)
    )


@pytest.fixture
def services(settings: Settings, postgres: None, redis_url: str, chroma_url: str) -> None:
    settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CHROMA_URL = chroma_url


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_passes_against_the_real_services_and_fails_on_a_dead_endpoint(
    services: None, built_bundle: Path, roomy_disk: None, vllm_double: VllmDouble
) -> None:
    _endpoint("qwen", vllm_double.base_url, vllm_double.model)
    _endpoint("switched-off", f"http://127.0.0.1:{free_port()}/v1", "x", enabled=False)

    output, status = _run("--json")

    assert status == 0, output
    report = json.loads(output)
    assert report["ok"] is True
    assert report["counts"]["FAIL"] == 0
    rows = _rows(output)
    assert rows["database"]["status"] == "OK"
    assert rows["database"]["detail"].startswith("PostgreSQL ")
    assert rows["redis"]["status"] == "OK"
    assert rows["celery broker"]["status"] == "OK"
    assert rows["chroma"]["status"] == "OK"
    assert rows["model qwen"]["status"] == "OK"
    assert vllm_double.model in rows["model qwen"]["detail"]
    assert "model switched-off" not in rows  # only enabled endpoints are probed
    assert rows["disk"]["status"] == "OK"
    assert rows["frontend bundle"]["status"] == "OK"
    assert rows["gpu"]["status"] in {"INFO", "WARN"}  # never a failure: a GPU is optional
    assert rows["python"]["status"] == "OK"

    dead = _endpoint("dead", f"http://127.0.0.1:{free_port()}/v1", "qwen")
    output, status = _run("--json")

    assert status == 1
    assert json.loads(output)["ok"] is False
    row = _rows(output)["model dead"]
    assert row["status"] == "FAIL"
    assert "dead" in row["detail"]
    assert row["fix"].startswith("start the model server at http://127.0.0.1:")
    assert f"/admin/workflows/modelendpoint/{dead.pk}/change/" in row["fix"]
    assert _rows(output)["model qwen"]["status"] == "OK"


def test_the_table_names_each_failure_with_its_fix_and_masks_passwords(
    settings: Settings, postgres: None, built_bundle: Path, roomy_disk: None
) -> None:
    closed = free_port()
    settings.REDIS_URL = f"redis://:redis-pass-123@127.0.0.1:{closed}/0"
    settings.CELERY_BROKER_URL = f"redis://:broker-pass-456@127.0.0.1:{closed}/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CHROMA_URL = ""
    _endpoint(
        "private",
        f"http://bob:endpoint-pass-789@127.0.0.1:{closed}/v1",
        "qwen",
        api_key="sk-endpoint-key-000",
    )

    output, status = _run()

    assert status == 1
    for secret in ("redis-pass-123", "broker-pass-456", "endpoint-pass-789", "sk-endpoint-key"):
        assert secret not in output
    assert "bob:***@127.0.0.1" in output
    lines = output.splitlines()
    assert lines[0].split() == ["check", "status", "detail"]
    redis_row = next(i for i, line in enumerate(lines) if line.startswith("redis "))
    assert lines[redis_row].split()[1] == "FAIL"
    assert "fix: start Redis" in lines[redis_row + 1]
    chroma_row = next(line for line in lines if line.startswith("chroma "))
    assert chroma_row.split()[1] == "WARN"
    assert "not configured" in chroma_row
    assert "FAIL" in lines[-1]  # the counts


def test_a_service_that_never_answers_is_a_failure_after_the_timeout(
    services: None, built_bundle: Path, roomy_disk: None, silent_port: int
) -> None:
    _endpoint("silent", f"http://127.0.0.1:{silent_port}/v1", "qwen")

    started = time.monotonic()
    output, status = _run("--json", "--timeout", "1")

    assert time.monotonic() - started < 10
    assert status == 1
    row = _rows(output)["model silent"]
    assert row["status"] == "FAIL"
    assert row["detail"] == "no answer within 1 s"
    assert row["ms"] < 4000


def test_no_enabled_endpoint_is_a_warning(
    services: None, built_bundle: Path, roomy_disk: None
) -> None:
    output, status = _run("--json")

    assert status == 0, output
    row = _rows(output)["model endpoints"]
    assert row["status"] == "WARN"
    assert "load_models" in row["fix"]


@pytest.mark.parametrize(
    ("free_gb", "total_gb", "expected"),
    [
        (400, 500, Status.OK),
        (8, 50, Status.OK),  # 16 %: enough
        (4.9, 20, Status.WARN),  # under 5 GB
        (9, 100, Status.WARN),  # under 10 %
        (0.9, 20, Status.FAIL),  # under 1 GB
    ],
)
def test_disk_space_thresholds(
    monkeypatch: pytest.MonkeyPatch, free_gb: float, total_gb: float, expected: Status
) -> None:
    usage = _usage(total=total_gb * GB, free=free_gb * GB)
    monkeypatch.setattr(environment, "disk_usage", lambda path: usage)

    [row] = environment._disk(5.0)

    assert row.status == expected
    assert (row.fix != "") == (expected != Status.OK)


@pytest.mark.django_db
def test_a_full_disk_fails_the_command(monkeypatch: pytest.MonkeyPatch, built_bundle: Path) -> None:
    monkeypatch.setattr(environment, "disk_usage", lambda path: _usage(total=100 * GB, free=GB / 2))

    output, status = _run("--json")

    assert status == 1
    assert _rows(output)["disk"]["status"] == "FAIL"


def test_missing_node_is_a_warning_with_a_built_bundle_and_a_failure_without(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> None:
    monkeypatch.setattr(environment, "_command_version", lambda command, timeout: None)
    settings.FRONTEND_DIST = tmp_path / "nothing-built"

    [node] = environment._node(5.0)
    assert node.status == Status.FAIL
    assert "npm ci && npm run build" in node.fix

    manifest = tmp_path / "nothing-built" / ".vite" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}", encoding="utf-8")
    [node] = environment._node(5.0)
    assert node.status == Status.WARN


def test_rejects_a_nonsense_timeout() -> None:
    with pytest.raises(CommandError, match="--timeout"):
        call_command("check_env", "--timeout", "0", stdout=StringIO())


def _fake_nvidia_smi(folder: Path, script: str) -> None:
    binary = folder / "nvidia-smi"
    binary.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    binary.chmod(0o755)


def test_gpus_are_listed_without_their_ids_and_a_broken_driver_is_only_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    _fake_nvidia_smi(
        tmp_path,
        "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1e2d3c-aaaa-bbbb-cccc-123456789abc)'",
    )

    [gpu] = environment._gpu(5.0)

    assert gpu.status == Status.INFO
    assert gpu.detail == "1 visible: GPU 0: NVIDIA H100 80GB HBM3"

    _fake_nvidia_smi(
        tmp_path, "echo 'NVIDIA-SMI has failed because it could not communicate' >&2; exit 9"
    )

    [gpu] = environment._gpu(5.0)

    assert gpu.status == Status.WARN
    assert "could not communicate" in gpu.detail
    assert "NVIDIA driver" in gpu.fix
