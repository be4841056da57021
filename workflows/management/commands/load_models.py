from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.endpoint_loading import ModelsFileError


class Command(BaseCommand):
    help = (
        "Create or update model endpoints from a models.yaml file (see docs/llm.md), by name. "
        "Idempotent; keys come from the environment variables the file names."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="e.g. deploy/models.yaml")
        parser.add_argument(
            "--owner", help="username who gets every permission on the endpoints it creates"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            text = Path(options["file"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        owner = None
        if options["owner"]:
            user_model = get_user_model()
            try:
                owner = user_model._default_manager.get_by_natural_key(options["owner"])
            except user_model.DoesNotExist:
                raise CommandError(f"no user is named {options['owner']!r}") from None
        try:
            outcome = services.model_endpoints_load(text=text, environ=os.environ, actor=owner)
        except ModelsFileError as exc:
            raise CommandError(f"nothing loaded: {exc}") from exc
        for change in ("created", "updated", "unchanged"):
            names = outcome[change]
            self.stdout.write(f"{change}: {', '.join(names) if names else '-'}")
