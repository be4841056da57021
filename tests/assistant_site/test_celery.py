from __future__ import annotations

from typing import Any

import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from assistant_site.celery import app, database_defaults
from assistant_site.tasks import ping_task


def test_task_round_trip_through_redis_with_a_real_worker(redis_url: str) -> None:
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    assert app.conf.broker_url == redis_url
    # The worker consumes the declared queues in a thread of this process, over real Redis.
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["runs"], shutdown_timeout=10
    ):
        result = ping_task.delay("你好")
        answer = result.get(timeout=20)
    assert answer["echo"] == "你好"
    assert result.status == "SUCCESS"
    # The answer travelled through the result backend in Redis, not through memory.
    assert app.conf.result_backend == redis_url
    stored = redis.Redis.from_url(redis_url)
    try:
        assert stored.exists(f"celery-task-meta-{result.id}") == 1
    finally:
        stored.close()


def test_knowledge_tasks_route_to_the_ingest_queue() -> None:
    route = app.amqp.router.route({}, "knowledge.tasks.ingest_document", args=(), kwargs={})
    assert route["queue"].name == "ingest"
    assert (
        app.amqp.router.route({}, "workflows.tasks.run_start", args=(), kwargs={})["queue"].name
        == "runs"
    )
    assert {queue.name for queue in app.conf.task_queues} == {"runs", "ingest"}


def test_pooled_workers_hand_connections_back_after_each_task(settings: Any) -> None:
    """With the psycopg pool, a worker thread must not keep a connection between tasks: 10
    threads that had run a connector task held the pool's 10 connections, and the other
    threads' runs failed with PoolTimeout (bench/end_to_end.py). Celery's Django fix-up
    closes (returns) the connection around each task when CELERY_DB_REUSE_MAX is unset."""
    default = settings.DATABASES["default"]
    settings.DATABASES = {"default": {**default, "OPTIONS": {"pool": {"max_size": 10}}}}
    assert "CELERY_DB_REUSE_MAX" not in database_defaults()
    # Without a pool, closing means a new connection per task: reuse it.
    settings.DATABASES = {"default": {**default, "OPTIONS": {}}}
    assert database_defaults() == {"CELERY_DB_REUSE_MAX": 1000}
