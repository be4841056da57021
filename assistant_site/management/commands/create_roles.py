from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from assistant_site.roles import ROLES, roles_sync


class Command(BaseCommand):
    help = "Create the roles (groups) and set their permissions to the documented table."

    def handle(self, *args: Any, **options: Any) -> None:
        roles_sync()
        self.stdout.write(f"roles up to date: {', '.join(role.name for role in ROLES)}")
