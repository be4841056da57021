from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant_site.crypto import SecretDecryptionError
from assistant_site.secrets_rotation import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the current key (the first in SECRETS_KEYS). "
        "Put the new key first, keep the old one after it, run this, then remove the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--all", action="store_true", help="also re-encrypt values already on the current key"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = secrets_rotate(include_current=options["all"])
        except SecretDecryptionError as exc:
            raise CommandError(f"nothing was changed: {exc}") from exc
        for label, count in sorted(result.per_field.items()):
            self.stdout.write(f"{label}: {count} re-encrypted")
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.total} secret(s) now on key {result.key_id!r}; "
                f"{result.already_current} were on it already"
            )
        )
