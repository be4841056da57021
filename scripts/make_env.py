"""Write a .env from .env.example, filling the keys that must be unique per installation."""

from __future__ import annotations

import base64
import secrets
import sys
from pathlib import Path

GENERATED = {
    "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "SECRETS_KEYS": lambda: "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "METRICS_BEARER_TOKEN": lambda: secrets.token_urlsafe(24),
}


def main(source: str, target: str) -> None:
    lines = []
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name in GENERATED and not value:
            lines.append(f"{name}={GENERATED[name]()}")
        else:
            lines.append(line)
    Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path(target).chmod(0o600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
