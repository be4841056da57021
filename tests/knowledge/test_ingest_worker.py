"""A real ingestion through a Celery worker on the `ingest` queue, real Redis, PostgreSQL and
Chroma, followed live over the document-status WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from assistant_site.celery import app
from assistant_site.roles import CURATOR
from assistant_site.routing import websocket_urlpatterns
from knowledge import services
from knowledge.models import Document, KnowledgeBase
from tests.conftest import close_sessions_since, database_now, require_service


@pytest.mark.django_db(transaction=True)
def test_an_upload_is_ingested_by_the_worker_and_watched_live(
    redis_url: str, index: None, make_user: Callable[..., Any]
) -> None:
    require_service(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    curator = make_user("curator", roles=(CURATOR,))
    base = services.knowledge_base_create(actor=curator, data={"name": "IT"})
    api = Client()
    api.force_login(curator)
    since = database_now()

    async def watch(document_ids: list[str]) -> list[dict[str, Any]]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/knowledge/{base.pk}/"
        )
        communicator.scope["user"] = curator
        connected, _ = await communicator.connect()
        assert connected
        upload = SimpleUploadedFile(
            "vpn.md", "# VPN\n\n在家办公时请先连接公司 VPN，再访问内部系统。".encode()
        )
        response = await asyncio.to_thread(
            api.post, f"/api/knowledge-bases/{base.pk}/documents/upload/", {"files": [upload]}
        )
        document_ids.append(response.json()[0]["id"])
        seen = []
        while True:
            message = await communicator.receive_json_from(timeout=60)
            seen.append(message["document"])
            if message["document"]["status"] in {"indexed", "failed"}:
                break
        await communicator.disconnect()
        return seen

    app.control.purge()
    ids: list[str] = []
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["ingest"], shutdown_timeout=30
    ):
        statuses = asyncio.run(watch(ids))
        deadline = time.monotonic() + 10
        while Document.objects.get(pk=ids[0]).status != "indexed" and time.monotonic() < deadline:
            time.sleep(0.1)
    close_sessions_since(since)

    assert [s["status"] for s in statuses] == ["parsing", "splitting", "embedding", "indexed"]
    document = Document.objects.get(pk=ids[0])
    assert document.status == Document.Status.INDEXED
    assert document.chunk_count == statuses[-1]["chunk_count"] > 0
    hits = api.post(
        f"/api/knowledge-bases/{base.pk}/search/",
        {"query": "在家怎么访问内部系统"},
        content_type="application/json",
    ).json()["passages"]
    assert "VPN" in hits[0]["text"]


@pytest.mark.django_db
def test_strangers_cannot_watch_a_knowledge_base(make_user: Callable[..., Any]) -> None:
    base = KnowledgeBase.objects.create(name="secret")
    stranger = make_user("stranger")

    async def connect() -> tuple[bool, Any]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/knowledge/{base.pk}/"
        )
        communicator.scope["user"] = stranger
        result: tuple[bool, Any] = await communicator.connect()
        return result

    connected, code = asyncio.run(connect())
    assert not connected
    assert code == 4404
