from __future__ import annotations

import shutil
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Everything the run command does before starting servers, in one process: migrate, "
        "compile translations, collect static files, then init_assistant: the roles, the "
        "first administrator (its password printed once) and the samples (demo workflows, "
        "a knowledge base with sample documents, a web chat connector)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--skip-samples",
            action="store_true",
            help="no demo workflows, knowledge base or web chat (a public server)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("==> migrating the database")
        call_command("migrate", interactive=False, verbosity=0)
        if shutil.which("msgfmt"):
            call_command("compilemessages", ignore_patterns=[".venv"], verbosity=0)
        else:
            self.stderr.write(
                "WARNING: msgfmt not found (apt-get install gettext): the UI stays in English"
            )
        call_command("collectstatic", interactive=False, verbosity=0)
        # The roles, the first administrator "admin" (its password printed once) and the
        # samples; idempotent, so every start runs it and a second one changes nothing.
        self.stdout.write("==> setting up: roles, administrator, samples (init_assistant)")
        call_command(
            "init_assistant",
            interactive=False,
            username="admin",
            skip_samples=options["skip_samples"],
            stdout=self.stdout,
        )
