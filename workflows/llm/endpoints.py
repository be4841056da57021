"""What the gateway needs to know about one model endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENDPOINT_KINDS = ("chat", "embedding", "rerank")


@dataclass(frozen=True)
class EndpointConfig:
    """One model endpoint, as the runner loaded it from the database for this run.

    ``base_url`` ends with the API version (``http://vllm:8000/v1``). ``revision`` changes
    whenever the endpoint row changes (the runner fills it from ``updated_at``): the gateway
    keys its HTTP clients by it, so an edit applies on the next call in every worker.
    ``api_key`` is plaintext ("" when the server needs none) and is kept out of ``repr``.
    """

    id: int
    name: str
    kind: str
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0
    max_concurrency: int = 64
    default_params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    revision: str = ""
