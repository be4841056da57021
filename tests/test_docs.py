"""The documentation matches the code: every setting and every role is described."""

from __future__ import annotations

import re

from assistant_site.roles import ROLES
from tests.conftest import REPO

_READERS = re.compile(r'env_(?:str|bool|int|float|list)\(\s*"([A-Z0-9_]+)"')


def _settings_read() -> set[str]:
    source = (REPO / "assistant_site/settings/base.py").read_text(encoding="utf-8")
    return set(_READERS.findall(source))


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    names = _settings_read()
    assert len(names) > 20
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    page = (REPO / "README.md").read_text(encoding="utf-8")
    assert sorted(n for n in names if f"{n}=" not in example) == []
    assert sorted(n for n in names if f"`{n}`" not in page) == []


def test_every_role_is_in_the_roles_page_with_its_admin_access() -> None:
    page = (REPO / "docs/roles.md").read_text(encoding="utf-8")
    for role in ROLES:
        row = re.search(rf"^\| {role.name} \| (yes|no) \|", page, re.MULTILINE)
        assert row is not None, role.name
        assert (row.group(1) == "yes") == role.staff, role.name
