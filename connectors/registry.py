"""Platform adapters by name, and validation of a connector's settings against its adapter.

Adapters are imported on first use, so that a platform's SDK is loaded only by the
processes that serve it.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from assistant_site.crypto import StoredSecret
from connectors.base import Adapter, ConnectorSettings

if TYPE_CHECKING:
    from connectors.models import Connector

# platform -> "module:Class"
ADAPTERS: dict[str, str] = {
    "feishu": "connectors.feishu.adapter:FeishuAdapter",
    "telegram": "connectors.telegram.adapter:TelegramAdapter",
    "webchat": "connectors.webchat.adapter:WebchatAdapter",
}


@functools.cache
def adapter_for(platform: str) -> Adapter:
    path = ADAPTERS.get(platform)
    if path is None:
        raise KeyError(f"unknown platform {platform!r}; choose from {', '.join(sorted(ADAPTERS))}")
    module, _sep, name = path.partition(":")
    adapter: Adapter = getattr(importlib.import_module(module), name)()
    return adapter


def platform_choices() -> list[tuple[str, str]]:
    return [(platform, adapter_for(platform).label) for platform in sorted(ADAPTERS)]


def secrets_dict(connector: Connector) -> dict[str, Any]:
    """The connector's decrypted credentials (an empty object when none are stored)."""
    raw = connector.secrets
    text = raw.reveal() if isinstance(raw, StoredSecret) else str(raw or "")
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _errors(prefix: str, exc: PydanticValidationError) -> list[str]:
    # Field names and pydantic's words only: a refused secret's value is never echoed.
    return [
        f"{prefix}.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        if error["loc"]
        else f"{prefix}: {error['msg']}"
        for error in exc.errors(include_input=False)
    ]


def settings_problems(connector: Connector) -> dict[str, list[str]]:
    """Field -> messages for a config or credentials the platform's models refuse."""
    adapter = adapter_for(connector.platform)
    problems: dict[str, list[str]] = {}
    try:
        adapter.config_model.model_validate(connector.config)
    except PydanticValidationError as exc:
        problems["config"] = _errors("config", exc)
    try:
        adapter.secrets_model.model_validate(secrets_dict(connector))
    except PydanticValidationError as exc:
        problems["secrets"] = _errors("secrets", exc)
    except ValueError:
        problems["secrets"] = ["secrets: not a JSON object"]
    return problems


def connector_settings(connector: Connector) -> ConnectorSettings:
    adapter = adapter_for(connector.platform)
    return ConnectorSettings(
        connector_id=connector.pk,
        config=adapter.config_model.model_validate(connector.config),
        secrets=adapter.secrets_model.model_validate(secrets_dict(connector)),
        api_base_url=(connector.api_base_url or adapter.default_api_base_url).rstrip("/"),
    )
