"""manage.py load_models: endpoints from a models.yaml, idempotent, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from assistant_site.permissions import user_can
from audit.models import AuditEntry
from workflows.models import ModelEndpoint

MODELS = """
endpoints:
  - name: qwen-chat
    kind: chat
    base_url: http://vllm-chat:8000/v1
    model: qwen2.5-7b-instruct
    api_key_env: TEST_VLLM_KEY
    timeout_s: 30
    max_concurrency: 256
    default_params: {temperature: 0.7, max_tokens: 1024}
  - name: bge
    kind: embedding
    base_url: http://vllm-embed:8001/v1
    model: bge-m3
"""


def _load(tmp_path: Path, text: str, *args: str) -> str:
    path = tmp_path / "models.yaml"
    path.write_text(text, encoding="utf-8")
    out = StringIO()
    call_command("load_models", str(path), *args, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VLLM_KEY", "sk-vllm-1")


def test_creates_the_endpoints_with_their_keys_from_the_environment(
    tmp_path: Path, db: None
) -> None:
    output = _load(tmp_path, MODELS)
    assert "created: qwen-chat, bge" in output
    chat = ModelEndpoint.objects.get(name="qwen-chat")
    assert (chat.kind, chat.base_url, chat.model) == (
        "chat",
        "http://vllm-chat:8000/v1",
        "qwen2.5-7b-instruct",
    )
    assert chat.timeout_s == 30
    assert chat.max_concurrency == 256
    assert chat.default_params == {"temperature": 0.7, "max_tokens": 1024}
    assert chat.api_key.reveal() == "sk-vllm-1"
    assert ModelEndpoint.objects.get(name="bge").api_key == ""


def test_loading_again_changes_nothing_and_audits_nothing(tmp_path: Path, db: None) -> None:
    _load(tmp_path, MODELS)
    entries = AuditEntry.objects.count()
    output = _load(tmp_path, MODELS)
    assert "unchanged: qwen-chat, bge" in output
    assert AuditEntry.objects.count() == entries


def test_a_changed_entry_or_key_updates_the_endpoint_in_place(
    tmp_path: Path, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(tmp_path, MODELS)
    pk = ModelEndpoint.objects.get(name="qwen-chat").pk
    monkeypatch.setenv("TEST_VLLM_KEY", "sk-vllm-2")
    output = _load(tmp_path, MODELS.replace("timeout_s: 30", "timeout_s: 45"))
    assert "updated: qwen-chat" in output
    chat = ModelEndpoint.objects.get(name="qwen-chat")
    assert chat.pk == pk
    assert chat.timeout_s == 45
    assert chat.api_key.reveal() == "sk-vllm-2"


def test_the_owner_gets_every_permission_on_what_is_created(
    tmp_path: Path, make_user: Callable[..., Any]
) -> None:
    owner = make_user("ops")
    _load(tmp_path, MODELS, "--owner", "ops")
    endpoint = ModelEndpoint.objects.get(name="qwen-chat")
    assert user_can(owner, "use", endpoint)
    assert user_can(owner, "change", endpoint)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endpoints: []", "endpoints: List should have at least 1 item"),
        ("- just a list", "file: Input should be a valid dictionary"),
        ("endpoints: [{name: x, base_url: 'http://a/v1'}]", "endpoints.0.model: Field required"),
        (MODELS.replace("kind: embedding", "kind: vision"), "endpoints.1.kind"),
        (MODELS.replace("temperature: 0.7", "temperature: 7"), "temperature"),
        (MODELS.replace("timeout_s: 30", "timeout_s: 30\n    colour: red"), "colour"),
        (MODELS.replace("name: bge", "name: qwen-chat"), "unique: qwen-chat"),
        (MODELS.replace("TEST_VLLM_KEY", "UNSET_VLLM_KEY"), "UNSET_VLLM_KEY is not set"),
        (MODELS.replace("http://vllm-embed:8001/v1", "ftp://x/v1"), "bge: base_url"),
        ("endpoints: [", "not YAML"),
    ],
)
def test_a_bad_file_loads_nothing_and_names_the_problem(
    tmp_path: Path, db: None, text: str, message: str
) -> None:
    with pytest.raises(CommandError, match="nothing loaded") as refused:
        _load(tmp_path, text)
    assert message in str(refused.value)
    assert not ModelEndpoint.objects.exists()


def test_a_disabled_entry_may_wait_for_its_key(tmp_path: Path, db: None) -> None:
    spare = MODELS.replace("TEST_VLLM_KEY", "UNSET_VLLM_KEY").replace(
        "max_concurrency: 256", "max_concurrency: 256\n    enabled: false"
    )
    assert "created: qwen-chat, bge" in _load(tmp_path, spare)
    assert not ModelEndpoint.objects.get(name="qwen-chat").enabled


def test_the_shipped_example_file_loads(tmp_path: Path, db: None, monkeypatch: Any) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "k1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # its entry is a disabled spare
    example = Path(__file__).resolve().parents[2] / "deploy" / "models.yaml"
    output = _load(tmp_path, example.read_text(encoding="utf-8"))
    assert output.startswith("created: ")
    assert ModelEndpoint.objects.filter(kind="chat").exists()
    assert ModelEndpoint.objects.filter(kind="embedding").exists()
