"""Ingestion outcomes are counted for the dashboard and the ingestion-failure alert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from prometheus_client import REGISTRY

from assistant_site.roles import CURATOR
from knowledge import services

pytestmark = pytest.mark.django_db


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("assistant_ingestion_documents_total", {"outcome": outcome})
    return value or 0.0


def _ingest(make_user: Callable[..., Any], name: str, content: bytes) -> str:
    curator = make_user(roles=(CURATOR,))
    base = services.knowledge_base_create(actor=curator, data={"name": f"base {name}"})
    upload = SimpleUploadedFile(name, content)
    document = services.document_upload(base=base, upload=upload, actor=curator, queue=False)
    return str(services.document_ingest(document_id=str(document.pk)).status)


def test_a_failed_document_is_counted(make_user: Callable[..., Any]) -> None:
    failed, indexed = _count("failed"), _count("indexed")
    assert _ingest(make_user, "scan.pdf", b"%PDF-1.4 not really a pdf") == "failed"
    assert _count("failed") == failed + 1
    assert _count("indexed") == indexed


def test_an_indexed_document_is_counted(make_user: Callable[..., Any], index: None) -> None:
    indexed = _count("indexed")
    assert _ingest(make_user, "faq.md", "# 退货\n\n七天内可以退货。\n".encode()) == "indexed"
    assert _count("indexed") == indexed + 1
