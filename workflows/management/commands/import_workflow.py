from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.exceptions import WorkflowInvalidError


class Command(BaseCommand):
    help = "Create a workflow from an export file (YAML or JSON); its graph becomes the draft."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--owner", required=True, help="username who will own it")
        parser.add_argument("--name", help="name for the new workflow (default: the export's)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            text = Path(options["file"]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        user_model = get_user_model()
        try:
            owner = user_model._default_manager.get_by_natural_key(options["owner"])
        except user_model.DoesNotExist:
            raise CommandError(f"no user is named {options['owner']!r}") from None
        try:
            workflow = services.workflow_import(actor=owner, text=text, name=options["name"])
        except WorkflowInvalidError as exc:
            details = "; ".join(f"{p.get('field') or '-'}: {p['message']}" for p in exc.problems)
            raise CommandError(f"not imported: {details}") from exc
        self.stdout.write(f"imported {workflow.name!r} as {workflow.pk}")
