"""Who may do what on every knowledge endpoint (knowledge/urls.py) and on the document status
WebSocket (knowledge/consumers.py).

One knowledge base with one document, owned by someone else, and one caller per access level:

- ``anonymous``: not logged in;
- ``stranger``: logged in, no role, no permission on the base;
- ``curator``: the Curator role (may create bases), no permission on this one;
- ``viewer``: *view* on the base; ``editor``: *view* and *change*; ``manager``: *view* and
  *manage documents*; ``deleter``: *view* and *delete*;
- ``manage_only``: *manage documents* without *view*.

An object the caller may not view answers 404 (its existence is not revealed); one they may
view but not act on answers 403; anonymous callers get 403 (session authentication sends no
``WWW-Authenticate`` challenge, so DRF answers 403 rather than 401). A refused call changes
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import Client
from guardian.shortcuts import assign_perm

from assistant_site.roles import CURATOR
from audit.models import AuditEntry
from knowledge import services
from knowledge.consumers import CLOSE_NOT_FOUND
from knowledge.models import Document, KnowledgeBase
from knowledge.routing import websocket_urlpatterns

LEVELS = (
    "anonymous",
    "stranger",
    "curator",
    "viewer",
    "editor",
    "manager",
    "deleter",
    "manage_only",
)
# Object permissions each level holds on the base.
GRANTS: dict[str, tuple[str, ...]] = {
    "viewer": ("view",),
    "editor": ("view", "change"),
    "manager": ("view", "manage_documents"),
    "deleter": ("view", "delete"),
    "manage_only": ("manage_documents",),
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # {base} and {document} are filled in
    body: Callable[[], dict[str, Any]] | None = None
    multipart: bool = False


ENDPOINTS = {
    e.name: e
    for e in (
        Endpoint("base-list", "get", "/api/knowledge-bases/"),
        Endpoint("base-create", "post", "/api/knowledge-bases/create/", lambda: {"name": "New"}),
        Endpoint("base-detail", "get", "/api/knowledge-bases/{base}/"),
        Endpoint(
            "base-update",
            "patch",
            "/api/knowledge-bases/{base}/update/",
            lambda: {"description": "changed"},
        ),
        Endpoint("base-delete", "delete", "/api/knowledge-bases/{base}/delete/"),
        Endpoint("document-list", "get", "/api/knowledge-bases/{base}/documents/"),
        Endpoint(
            "document-upload",
            "post",
            "/api/knowledge-bases/{base}/documents/upload/",
            lambda: {"files": [SimpleUploadedFile("more.txt", b"more text")]},
            multipart=True,
        ),
        Endpoint(
            "base-search",
            "post",
            "/api/knowledge-bases/{base}/search/",
            # Keyword mode: the permission check, not the vector index, is under test.
            lambda: {"query": "notes", "mode": "keyword"},
        ),
        Endpoint("document-detail", "get", "/api/documents/{document}/"),
        Endpoint("document-enable", "post", "/api/documents/{document}/enable/"),
        Endpoint("document-disable", "post", "/api/documents/{document}/disable/"),
        Endpoint("document-retry", "post", "/api/documents/{document}/retry/"),
        Endpoint("document-download", "get", "/api/documents/{document}/download/"),
        Endpoint("document-delete", "delete", "/api/documents/{document}/delete/"),
    )
}

# fmt: off
MATRIX: dict[str, tuple[int, ...]] = {
    #                   anonymous stranger curator viewer editor manager deleter manage_only
    "base-list":         (403,    200,     200,    200,   200,   200,    200,    200),
    "base-create":       (403,    403,     201,    403,   403,   403,    403,    403),
    "base-detail":       (403,    404,     404,    200,   200,   200,    200,    404),
    "base-update":       (403,    404,     404,    403,   200,   403,    403,    404),
    "base-delete":       (403,    404,     404,    403,   403,   403,    204,    404),
    "document-list":     (403,    404,     404,    200,   200,   200,    200,    404),
    "document-upload":   (403,    404,     404,    403,   403,   201,    403,    404),
    "base-search":       (403,    404,     404,    200,   200,   200,    200,    404),
    "document-detail":   (403,    404,     404,    200,   200,   200,    200,    404),
    "document-enable":   (403,    404,     404,    403,   403,   200,    403,    404),
    "document-disable":  (403,    404,     404,    403,   403,   200,    403,    404),
    "document-retry":    (403,    404,     404,    403,   403,   200,    403,    404),
    "document-download": (403,    404,     404,    200,   200,   200,    200,    404),
    "document-delete":   (403,    404,     404,    403,   403,   204,    403,    404),
}
# fmt: on
CASES = [
    pytest.param(name, level, MATRIX[name][column], id=f"{name}-{level}")
    for name in MATRIX
    for column, level in enumerate(LEVELS)
]


def test_the_matrix_covers_every_knowledge_url() -> None:
    from knowledge.urls import urlpatterns

    assert {pattern.name for pattern in urlpatterns} == set(ENDPOINTS) == set(MATRIX)
    assert all(len(row) == len(LEVELS) for row in MATRIX.values())


@dataclass(frozen=True)
class World:
    base: KnowledgeBase
    document: Document


@pytest.fixture
def world(make_user: Callable[..., Any]) -> World:
    owner = make_user("owner-curator", roles=(CURATOR,))
    base = services.knowledge_base_create(actor=owner, data={"name": "Handbook"})
    upload = SimpleUploadedFile("notes.txt", b"meeting notes")
    document = services.document_upload(base=base, upload=upload, actor=owner, queue=False)
    return World(base, document)


def _caller(level: str, world: World, make_user: Callable[..., Any]) -> Any:
    if level == "anonymous":
        return None
    user = make_user(level, roles=(CURATOR,) if level == "curator" else ())
    for action in GRANTS.get(level, ()):
        assign_perm(f"{action}_knowledgebase", user, world.base)
    return user


def _state(world: World) -> tuple[Any, ...]:
    """What a write could change (every document action is audited): refused calls must leave
    it as it was."""
    base = KnowledgeBase.objects.filter(pk=world.base.pk).values("name", "description").first()
    document = (
        Document.objects.filter(pk=world.document.pk).values("enabled", "status", "error").first()
    )
    return (
        base,
        document,
        KnowledgeBase.objects.count(),
        Document.objects.filter(knowledge_base_id=world.base.pk).count(),
        AuditEntry.objects.count(),
    )


@pytest.mark.parametrize(("endpoint", "level", "expected"), CASES)
def test_permission_matrix(
    endpoint: str,
    level: str,
    expected: int,
    world: World,
    make_user: Callable[..., Any],
) -> None:
    spec = ENDPOINTS[endpoint]
    client = Client()
    user = _caller(level, world, make_user)
    if user is not None:
        client.force_login(user)
    path = spec.path.format(base=world.base.pk, document=world.document.pk)
    body = spec.body() if spec.body else None
    before = _state(world)
    call = getattr(client, spec.method)
    if body is None:
        response = call(path)
    elif spec.multipart:
        response = call(path, body)
    else:
        response = call(path, body, content_type="application/json")
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert _state(world) == before
    elif spec.method != "get" and endpoint != "base-search":
        assert _state(world) != before  # the allowed write did happen


@pytest.mark.parametrize("level", LEVELS)
def test_the_list_shows_a_base_only_to_those_who_may_view_it(
    level: str, world: World, make_user: Callable[..., Any]
) -> None:
    user = _caller(level, world, make_user)
    if user is None:
        return  # refused outright: see the matrix
    client = Client()
    client.force_login(user)
    listed = {row["id"] for row in client.get("/api/knowledge-bases/").json()["results"]}
    assert (world.base.pk in listed) == ("view" in GRANTS.get(level, ()))


@pytest.mark.parametrize("level", ["viewer", "editor", "manager", "deleter"])
def test_the_detail_names_the_callers_actions(
    level: str, world: World, make_user: Callable[..., Any]
) -> None:
    client = Client()
    client.force_login(_caller(level, world, make_user))
    answer = client.get(f"/api/knowledge-bases/{world.base.pk}/").json()
    assert set(answer["permissions"]) == set(GRANTS[level])


@pytest.mark.django_db(transaction=True)  # the consumer reads on a thread of its own
@pytest.mark.parametrize("level", LEVELS)
def test_the_status_websocket_accepts_only_viewers(
    level: str, world: World, make_user: Callable[..., Any]
) -> None:
    user = _caller(level, world, make_user) or AnonymousUser()

    async def connect() -> tuple[bool, Any]:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/knowledge/{world.base.pk}/"
        )
        communicator.scope["user"] = user
        result: tuple[bool, Any] = await communicator.connect()
        if result[0]:
            await communicator.disconnect()
        # The consumer read on asgiref's database thread: close that thread's session, or it
        # outlives the test database.
        await sync_to_async(connections.close_all)()
        return result

    connected, code = asyncio.run(connect())
    may_view = "view" in GRANTS.get(level, ())
    assert connected is may_view
    if not may_view:
        assert code == CLOSE_NOT_FOUND
