from __future__ import annotations

import shutil
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Everything the run command does before starting servers, in one process: migrate, "
        "compile translations, collect static files, create the roles and the first "
        "administrator (its password printed once), and the demo workflows."
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
        call_command("create_roles", stdout=self.stdout)
        call_command("ensure_admin", stdout=self.stdout)
        call_command("load_demo", stdout=self.stdout)
