"""scripts/run.sh: the local Chroma server it starts and the CHROMA_URL the processes use
agree on the port, whichever of CHROMA_URL and CHROMA_PORT the user changed. The lines are
run by bash as they stand in run.sh."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

RUN_SH = Path(__file__).resolve().parents[2] / "scripts" / "run.sh"


def chroma_settings(env: dict[str, str]) -> tuple[str, str]:
    text = RUN_SH.read_text(encoding="utf-8")
    block = re.search(
        r"^LOCAL_CHROMA=.*?^CHROMA_PORT=\"\$\{CHROMA_PORT:-8001\}\"$", text, re.S | re.M
    )
    assert block is not None, "run.sh no longer sets CHROMA_PORT after LOCAL_CHROMA"
    script = f'{block.group(0)}\nprintf "%s %s" "${{CHROMA_URL:-}}" "$CHROMA_PORT"'
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    url, port = done.stdout.split(" ")
    return url, port


@pytest.mark.parametrize(
    ("env", "url", "port"),
    [
        ({"CHROMA_URL": "http://127.0.0.1:8001"}, "http://127.0.0.1:8001", "8001"),
        # Only the port changed (.env.example's CHROMA_PORT): the URL follows it.
        (
            {"CHROMA_URL": "http://127.0.0.1:8001", "CHROMA_PORT": "9005"},
            "http://127.0.0.1:9005",
            "9005",
        ),
        # Only the URL changed: the server listens there.
        ({"CHROMA_URL": "http://localhost:8123/"}, "http://localhost:8123/", "8123"),
        # A remote Chroma is left as it is.
        ({"CHROMA_URL": "http://chroma.internal:8000"}, "http://chroma.internal:8000", "8001"),
        ({}, "", "8001"),
    ],
)
def test_the_local_chroma_server_and_chroma_url_agree(
    env: dict[str, str], url: str, port: str
) -> None:
    assert chroma_settings(env) == (url, port)
