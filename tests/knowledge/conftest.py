from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from knowledge import services


@pytest.fixture
def index(settings: Settings, chroma_url: str) -> Iterator[None]:
    """The knowledge app talks to the session's real Chroma server."""
    settings.CHROMA_URL = chroma_url
    services._store = None  # a client for this server, made on first use
    yield
    services._store = None
