from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from assistant_site.roles import DESIGNER
from tests.conftest import REPO
from tests.workflows.engine import fake_nodes
from workflows import node_types
from workflows.nodes.llm import LlmConfig

MAKEMESSAGES = (
    "manage.py makemessages -l zh_Hans --ignore=.venv --ignore=tests --ignore=bench "
    "--ignore=frontend/node_modules --no-obsolete"
)


@pytest.fixture
def api(make_user: Callable[..., Any]) -> Client:
    client = Client()
    client.force_login(make_user("designer", roles=(DESIGNER,)))
    return client


def _node_types(api: Client, language: str) -> dict[str, Any]:
    response = api.get("/api/node-types/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return {t["type"]: t for t in response.json()}


def test_node_types_speak_simplified_chinese(api: Client) -> None:
    llm = _node_types(api, "zh-CN,zh;q=0.9")["llm"]
    assert llm["title"] == "大模型"
    assert "对话模型" in llm["description"]
    schema = llm["config_schema"]
    assert schema["properties"]["prompt"]["title"] == "用户提示词"
    assert schema["properties"]["prompt"]["description"].startswith("模板，例如")
    params = schema["$defs"]["GenerationParams"]["properties"]
    assert params["temperature"]["title"] == "温度"
    assert params["presence_penalty"]["title"] == "存在惩罚"  # pydantic's automatic title
    # Data is not text to translate: defaults and the template placeholders stay as they are.
    assert schema["properties"]["prompt"]["default"] == "{{ trigger.text }}"
    assert "{{ nodes.kb.context }}" in schema["properties"]["prompt"]["description"]


def test_node_types_stay_english_for_english_readers(api: Client) -> None:
    llm = _node_types(api, "en-US,en;q=0.9")["llm"]
    assert llm["title"] == "LLM"
    schema = llm["config_schema"]
    assert schema["properties"]["prompt"]["title"] == "User prompt"
    assert schema["$defs"]["GenerationParams"]["properties"]["presence_penalty"]["title"] == (
        "Presence Penalty"
    )


def test_translating_leaves_the_english_schema_alone(api: Client) -> None:
    _node_types(api, "zh-hans")
    assert LlmConfig.model_json_schema()["properties"]["prompt"]["title"] == "User prompt"


def test_only_titles_and_descriptions_in_schema_positions_are_translated() -> None:
    schema = {
        "title": "Config",
        "properties": {
            "title": {"title": "Title", "default": {"title": "data", "description": "data"}},
            "description": {"type": "string", "enum": ["title"], "examples": [{"title": "x"}]},
            "cases": {"type": "array", "items": {"$ref": "#/$defs/Case"}},
            "either": {"anyOf": [{"type": "string", "description": "Text"}, {"type": "null"}]},
        },
        "$defs": {"Case": {"properties": {"id": {"title": "Branch id"}}}},
    }
    mapped = node_types.map_schema_texts(schema, str.upper)
    assert mapped["title"] == "CONFIG"
    assert mapped["properties"]["title"]["title"] == "TITLE"
    assert mapped["properties"]["title"]["default"] == {"title": "data", "description": "data"}
    assert mapped["properties"]["description"]["examples"] == [{"title": "x"}]
    assert mapped["properties"]["either"]["anyOf"][0]["description"] == "TEXT"
    assert mapped["$defs"]["Case"]["properties"]["id"]["title"] == "BRANCH ID"
    assert schema["title"] == "Config"  # the input is not modified


def _translated_msgids(catalogue: Path) -> set[str]:
    """msgids with a non-empty, non-fuzzy msgstr (plural entries are not ours to check)."""
    translated = set()
    for entry in catalogue.read_text(encoding="utf-8").split("\n\n"):
        if "#, fuzzy" in entry:
            continue
        fields: dict[str, str] = {}
        name = ""
        for line in entry.splitlines():
            match = re.match(r'^(msgctxt|msgid|msgstr) (".*")$', line)
            if match:
                name = match.group(1)
                fields[name] = ast.literal_eval(match.group(2))
            elif line.startswith('"') and name:
                fields[name] += ast.literal_eval(line)
            else:
                name = ""
        if fields.get("msgid") and fields.get("msgstr") and "msgctxt" not in fields:
            translated.add(fields["msgid"])
    return translated


def test_every_node_type_string_has_a_chinese_translation() -> None:
    translated = _translated_msgids(REPO / "locale/zh_Hans/LC_MESSAGES/django.po")
    strings = node_types.schema_strings(node_types.shipped_node_types())
    assert len(strings) > 100
    missing = [text for text in strings if text not in translated]
    assert missing == [], (
        f"run `{node_types.REGENERATE_COMMAND}`, then `{MAKEMESSAGES}` and translate "
        "these in locale/zh_Hans/LC_MESSAGES/django.po"
    )


def test_the_generated_strings_module_is_up_to_date() -> None:
    expected = node_types.strings_module(node_types.shipped_node_types())
    assert node_types.STRINGS_PATH.read_text(encoding="utf-8") == expected, (
        f"{node_types.STRINGS_MODULE} is out of date: run `{node_types.REGENERATE_COMMAND}`"
    )
    call_command("node_schema_strings", "--check")


def test_the_command_writes_the_strings_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node_schema_strings.py"
    monkeypatch.setattr(node_types, "STRINGS_PATH", path)
    with pytest.raises(CommandError, match="out of date"):
        call_command("node_schema_strings", "--check")
    call_command("node_schema_strings")
    source = path.read_text(encoding="utf-8")
    assert 'gettext_noop("User prompt"),' in source
    assert 'gettext_noop("Presence Penalty"),' in source
    assert fake_nodes.Sleep.title not in source  # types registered by tests are not shipped
    call_command("node_schema_strings", "--check")
