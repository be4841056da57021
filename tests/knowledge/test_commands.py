"""manage.py ingest, check_index and reindex against a real Chroma server."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from knowledge import services
from knowledge.models import Document, KnowledgeBase
from knowledge.vectorstores.base import collection_name


@pytest.fixture
def base(make_user: Callable[..., Any]) -> KnowledgeBase:
    return services.knowledge_base_create(actor=make_user("curator"), data={"name": "IT 帮助"})


def _call(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_ingest_a_folder_with_progress_and_a_list_of_failures(
    base: KnowledgeBase, index: None, tmp_path: Path
) -> None:
    (tmp_path / "vpn.md").write_text(
        "# VPN\n\n连接公司 VPN 前请先安装客户端并使用工号登录。", encoding="utf-8"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "printer.txt").write_text(
        "The printer on floor 3 needs a badge.", encoding="utf-8"
    )
    (tmp_path / "broken.pdf").write_bytes(b"this is not a PDF")
    (tmp_path / "notes.bin").write_bytes(b"ignored: not a document type")
    out, err = _call("ingest", str(base.pk), str(tmp_path))
    assert "2 of 3 documents indexed into 'IT 帮助'" in out
    assert "failed: broken.pdf" in out
    assert "3/3" in err  # the progress bar
    assert set(Document.objects.values_list("filename", "status")) == {
        ("vpn.md", "indexed"),
        ("printer.txt", "indexed"),
        ("broken.pdf", "failed"),
    }


def test_ingest_names_a_missing_folder_or_base(base: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not a folder"):
        _call("ingest", str(base.pk), str(tmp_path / "nope"))
    with pytest.raises(CommandError, match="no single knowledge base"):
        _call("ingest", "999999", str(tmp_path))


def test_check_index_finds_drift_and_reindex_repairs_it(
    base: KnowledgeBase, index: None, tmp_path: Path
) -> None:
    (tmp_path / "vpn.md").write_text("# VPN\n\n连接公司 VPN 前请先安装客户端。", encoding="utf-8")
    _call("ingest", str(base.pk), str(tmp_path))
    out, _ = _call("check_index", str(base.pk))
    assert "in step" in out
    collection = collection_name(base.pk, services.embedder_for(base).key)
    services.vector_store().drop(collection)
    with pytest.raises(CommandError, match="drifted"):
        _call("check_index", str(base.pk))
    out, _ = _call("reindex", str(base.pk))
    assert "passages indexed" in out
    assert "in step" in _call("check_index", str(base.pk))[0]
