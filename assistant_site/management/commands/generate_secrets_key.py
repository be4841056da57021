from __future__ import annotations

import base64
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone


class Command(BaseCommand):
    help = "Print a new AES-256 key as a SECRETS_KEYS entry (key id:base64)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key-id", default="", help="default: k<YYYYMMDD>")

    def handle(self, *args: Any, **options: Any) -> None:
        key_id = options["key_id"] or timezone.now().strftime("k%Y%m%d")
        self.stdout.write(f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}")
