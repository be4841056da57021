"""The ``models.yaml`` format that ``manage.py load_models`` reads (see docs/llm.md).

Keys are never written in the file: each endpoint names the environment variable that holds
its key (``api_key_env``), so the file can live in version control and in a ConfigMap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workflows.nodes.llm import GenerationParams


class EndpointEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["chat", "embedding", "rerank"] = "chat"
    base_url: str = Field(min_length=1, max_length=500)
    model: str = Field(min_length=1, max_length=200)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(default=60.0, ge=0.1, le=3600)
    max_concurrency: int = Field(default=64, ge=1, le=4096)
    default_params: GenerationParams = Field(default_factory=GenerationParams)
    enabled: bool = True


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[EndpointEntry] = Field(min_length=1)

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[EndpointEntry]) -> list[EndpointEntry]:
        names = [entry.name for entry in endpoints]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"endpoint names must be unique: {', '.join(repeated)}")
        return endpoints


class ModelsFileError(ValueError):
    """The file cannot be loaded; the message names each problem and where it is."""


def models_file_parse(text: str) -> ModelsFile:
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelsFileError(f"not YAML: {exc}") from exc
    try:
        return ModelsFile.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ModelsFileError("; ".join(problems)) from exc


def api_key_of(entry: EndpointEntry, environ: Mapping[str, str]) -> str | None:
    """The key from the environment; None when the entry names no variable, or names an
    unset one but is disabled (the stored key, if any, is then left as it is)."""
    if entry.api_key_env is None:
        return None
    if entry.api_key_env not in environ:
        if not entry.enabled:
            return None  # a disabled spare (a commercial fallback) may wait for its key
        raise ModelsFileError(
            f"{entry.name}: the environment variable {entry.api_key_env} is not set"
        )
    return environ[entry.api_key_env]
