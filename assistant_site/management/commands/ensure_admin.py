from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from assistant_site.roles import ADMINISTRATOR, user_roles_set


class Command(BaseCommand):
    help = (
        "Create the first administrator if no superuser exists, printing its password once. "
        "Does nothing when one exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model._default_manager.filter(is_superuser=True).exists():
            self.stdout.write(
                "An administrator account exists already; its password is not shown again "
                "(reset it with `python manage.py changepassword <username>`)."
            )
            return
        password = secrets.token_urlsafe(12)
        user = user_model._default_manager.create_superuser(
            username=options["username"], email=options["email"], password=password
        )
        user_roles_set(user=user, roles=[ADMINISTRATOR])
        self.stdout.write(self.style.SUCCESS("Administrator account created (shown only once):"))
        self.stdout.write(f"    username: {user.get_username()}")
        self.stdout.write(f"    password: {password}")
