"""`manage.py init_assistant`: a fresh installation in one go (roles, the first administrator,
the samples with their documents indexed in a real Chroma server, a web chat connector), and
nothing more on a second run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from assistant_site.management.commands import init_assistant
from assistant_site.roles import ADMINISTRATOR, ROLES
from connectors.models import Connector
from knowledge import services as knowledge
from knowledge.models import Document, KnowledgeBase
from tests.conftest import free_port
from workflows import services as workflows
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

SAMPLES = sorted(path.name for path in workflows.DEMO_DOCUMENTS_DIR.glob("*.md"))


@pytest.fixture
def index(settings: Settings, chroma_url: str) -> Iterator[None]:
    """The knowledge app talks to the session's real Chroma server."""
    settings.CHROMA_URL = chroma_url
    knowledge._store = None  # a client for this server, made on first use
    yield
    knowledge._store = None


def _init(*args: str) -> str:
    out = StringIO()
    call_command("init_assistant", *args, stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {
        "superusers": get_user_model().objects.filter(is_superuser=True).count(),
        "users": get_user_model().objects.count(),
        "workflows": Workflow.objects.count(),
        "knowledge bases": KnowledgeBase.objects.count(),
        "documents": Document.objects.count(),
        "connectors": Connector.objects.count(),
    }


def test_sets_up_everything_once_and_a_second_run_changes_nothing(index: None) -> None:
    output = _init("--no-input", "--username", "boss", "--email", "boss@example.com")

    admin = get_user_model().objects.get(is_superuser=True)
    assert admin.username == "boss"
    assert admin.email == "boss@example.com"
    assert list(admin.groups.values_list("name", flat=True)) == [ADMINISTRATOR]
    password = re.search(r"password: (\S+)", output)
    assert password is not None, output
    assert admin.check_password(password.group(1))
    assert set(Group.objects.values_list("name", flat=True)) >= {role.name for role in ROLES}

    assert Workflow.objects.filter(created_by=admin).count() == 3
    base = KnowledgeBase.objects.get(name=workflows.DEMO_KNOWLEDGE_BASE)
    documents = base.documents.order_by("filename")
    assert [document.filename for document in documents] == SAMPLES
    assert len(SAMPLES) >= 3
    assert all(document.status == Document.Status.INDEXED for document in documents)
    assert all(document.chunk_count > 0 for document in documents)

    connector = Connector.objects.get()
    qa = workflows.demo_workflow_get(stem="knowledge_qa")
    assert connector.platform == "webchat"
    assert connector.enabled
    assert connector.workflow == qa
    assert f"web chat page:  http://127.0.0.1:8000/chat/{connector.pk}/" in output
    assert (
        f'<script src="http://127.0.0.1:8000/chat/widget.js" data-connector="{connector.pk}" '
        "async></script>"
    ) in output
    assert "Nothing changed" not in output
    before = _counts()

    again = _init("--no-input", "--username", "someone-else")

    assert _counts() == before
    assert "Nothing changed: this installation was set up already." in again
    assert password.group(1) not in again
    assert "exists already: boss" in again
    assert f"/chat/{connector.pk}/" in again
    assert not get_user_model().objects.filter(username="someone-else").exists()


def test_skip_samples_makes_only_the_roles_and_the_administrator() -> None:
    output = _init("--no-input", "--username", "boss", "--skip-samples")

    assert get_user_model().objects.get().username == "boss"
    assert set(Group.objects.values_list("name", flat=True)) >= {role.name for role in ROLES}
    assert Workflow.objects.count() == 0
    assert KnowledgeBase.objects.count() == 0
    assert Connector.objects.count() == 0
    assert "skipped (--skip-samples)" in output
    assert "/chat/" not in output


def test_without_chroma_the_documents_wait_for_the_next_run(
    settings: Settings, chroma_url: str
) -> None:
    settings.CHROMA_URL = f"http://127.0.0.1:{free_port()}"
    knowledge._store = None

    output = _init("--no-input", "--username", "boss")

    assert "not indexed: Chroma does not answer" in output
    assert Document.objects.count() == 0
    assert Workflow.objects.count() == 3
    assert Connector.objects.count() == 1

    settings.CHROMA_URL = chroma_url
    knowledge._store = None
    try:
        later = _init("--no-input", "--username", "boss")
    finally:
        knowledge._store = None

    assert f"indexed: {', '.join(SAMPLES)}" in later
    assert Document.objects.filter(status=Document.Status.INDEXED).count() == len(SAMPLES)
    assert Connector.objects.count() == 1
    assert "Nothing changed" not in later


def test_a_given_password_is_used_and_not_printed() -> None:
    output = _init(
        "--no-input", "--username", "boss", "--password", "a long pass phrase 42", "--skip-samples"
    )

    assert get_user_model().objects.get(username="boss").check_password("a long pass phrase 42")
    assert "a long pass phrase 42" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-input"], "--no-input needs --username"),
        (["--password", "a long pass phrase 42"], "--password goes with --no-input"),
        (["--no-input", "--username", "boss", "--password", "12345"], "too short"),
        (["--no-input", "--username", "boss", "--email", "not an address"], "valid email"),
    ],
)
def test_refuses_bad_flags_and_creates_nothing(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _init(*args, "--skip-samples")

    assert get_user_model().objects.count() == 0


def test_asks_for_the_administrator_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["chief", "chief@example.com"])
    # The first confirmation differs, the second password is too short, the third is taken.
    typed = iter(
        ["first pass phrase 1", "other", "short", "short", "right phrase 3", "right phrase 3"]
    )
    monkeypatch.setattr(init_assistant, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))

    errors = StringIO()
    call_command("init_assistant", "--skip-samples", stdout=StringIO(), stderr=errors)

    chief = get_user_model().objects.get(is_superuser=True)
    assert chief.username == "chief"
    assert chief.email == "chief@example.com"
    assert chief.check_password("right phrase 3")
    assert "differ" in errors.getvalue()
    assert "too short" in errors.getvalue()


def test_refuses_to_ask_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init_assistant, "_stdin_is_terminal", lambda: False)

    with pytest.raises(CommandError, match="no terminal to ask on: use --no-input"):
        _init("--skip-samples")

    assert get_user_model().objects.count() == 0
