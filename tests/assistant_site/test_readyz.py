from __future__ import annotations

import subprocess

from django.test import Client, override_settings


def test_readyz_reports_each_service_and_fails_when_redis_stops(
    client: Client, db: None, private_redis: tuple[str, subprocess.Popen[bytes]], chroma_url: str
) -> None:
    url, process = private_redis
    with override_settings(
        REDIS_URL=url, CELERY_BROKER_URL=url, CELERY_TASK_ALWAYS_EAGER=False, CHROMA_URL=chroma_url
    ):
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.content
        body = ready.json()
        assert body["status"] == "ready"
        assert {name for name, check in body["checks"].items() if check["ok"]} == {
            "database",
            "redis",
            "broker",
            "chroma",
        }

        process.terminate()
        process.wait(timeout=10)

        down = client.get("/readyz")
        assert down.status_code == 503
        checks = down.json()["checks"]
        assert down.json()["status"] == "not ready"
        assert checks["database"]["ok"] is True
        assert checks["chroma"]["ok"] is True
        assert checks["redis"]["ok"] is False
        assert checks["broker"]["ok"] is False
        assert "Connection" in checks["redis"]["detail"]


def test_readyz_fails_when_chroma_is_unreachable(client: Client, db: None) -> None:
    from tests.conftest import free_port

    with override_settings(CHROMA_URL=f"http://127.0.0.1:{free_port()}"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["chroma"]["ok"] is False


def test_readyz_names_embedded_services_as_not_configured(client: Client, db: None) -> None:
    with override_settings(
        REDIS_URL="", CELERY_TASK_ALWAYS_EAGER=True, CELERY_BROKER_URL="memory://", CHROMA_URL=""
    ):
        response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["redis"]["detail"].startswith("not configured")
    assert checks["broker"]["detail"].startswith("not configured")
