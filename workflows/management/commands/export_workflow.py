from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.models import Workflow


class Command(BaseCommand):
    help = "Write a workflow's draft or a published version as YAML or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow_id")
        parser.add_argument(
            "--workflow-version", type=int, help="a published version (default: the draft)"
        )
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workflow_id = uuid.UUID(options["workflow_id"])
        except ValueError:
            workflow_id = None
        workflow = Workflow.objects.filter(pk=workflow_id).first() if workflow_id else None
        if workflow is None:
            raise CommandError(f"no workflow with id {options['workflow_id']!r}")
        version = None
        if options["workflow_version"] is not None:
            version = workflow.versions.filter(number=options["workflow_version"]).first()
            if version is None:
                raise CommandError(f"{workflow} has no version {options['version']}")
        document = services.workflow_export(workflow=workflow, version=version)
        text = services.export_dumps(document, options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stdout.write(f"wrote {options['output']}")
        else:
            self.stdout.write(text)
