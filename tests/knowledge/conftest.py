from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pytest_django.fixtures import Settings

from assistant_site.roles import CURATOR
from knowledge import services
from knowledge.models import Document, KnowledgeBase
from tests.doubles.rerank_server import RerankDouble


@pytest.fixture
def index(settings: Settings, chroma_url: str) -> Iterator[None]:
    """The knowledge app talks to the session's real Chroma server."""
    settings.CHROMA_URL = chroma_url
    services._store = None  # a client for this server, made on first use
    yield
    services._store = None


@pytest.fixture
def reranker() -> Iterator[RerankDouble]:
    """A started double of vLLM's /v1/rerank (a rule, not a model) on a loopback port."""
    with RerankDouble(api_key="rk-test-key") as double:
        yield double


# Small documents for filter and rerank tests: every passage below is one chunk at a chunk
# size of 200. "annual leave" matches the leave documents strongly and the office guide only
# through "leave".
LIBRARY_FILES = {
    "leave-policy.md": """# Leave policy

## Chapter 2

Annual leave: employees get ten days of paid annual leave after one year of service.

### Requests

Request annual leave two weeks ahead; annual leave requests go to your manager.

## Chapter 20

Annual leave carried over from last year expires at the end of March.
""",
    "office-guide.md": """# Office guide

## Printers

The printers on each floor print badges; ask reception if a printer is out of paper before \
you leave.

## Parking

Parking spaces are shared: leave the barrier card at the desk on Fridays.

## Kitchen

The kitchen is cleaned every evening; leave dishes in the dishwasher.
""",
    "contractors.txt": "Annual leave for contractors is agreed in each contract.\n",
    "benefits.html": """<html><head><title>Benefits</title></head><body>
<h1>Leave policy</h1><h2>Chapter 2</h2>
<p>Annual leave can be bought: up to five extra days of annual leave a year.</p>
</body></html>""",
}


@dataclass(frozen=True)
class Library:
    base: KnowledgeBase
    curator: Any
    documents: dict[str, Document]  # by file name

    def chunk_ids(self, *filenames: str) -> set[str]:
        return {
            str(pk)
            for filename in filenames
            for pk in self.documents[filename].chunks.values_list("pk", flat=True)
        }


@pytest.fixture
def library(index: None, make_user: Callable[..., Any]) -> Library:
    """A knowledge base holding LIBRARY_FILES, ingested for real (parsed, split, embedded by
    the built-in model, indexed in Chroma)."""
    curator = make_user("librarian", roles=(CURATOR,))
    base = services.knowledge_base_create(
        actor=curator, data={"name": "library", "chunk_size": 200, "chunk_overlap": 20}
    )
    documents = {}
    for filename, text in LIBRARY_FILES.items():
        upload = SimpleUploadedFile(filename, text.encode())
        document = services.document_upload(base=base, upload=upload, actor=curator, queue=False)
        document = services.document_ingest(document_id=str(document.pk))
        assert document.status == Document.Status.INDEXED, document.error
        documents[filename] = document
    return Library(base, curator, documents)
