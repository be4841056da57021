from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant_site.roles import ADMINISTRATOR, user_roles_set


class Command(BaseCommand):
    help = (
        "Create the first administrator if no superuser exists, printing its password once "
        "(or with the password given). Does nothing when one exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password",
            help="the password (it must pass the password rules); default: a generated one, "
            "printed once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model._default_manager.filter(is_superuser=True).exists():
            self.stdout.write(
                "An administrator account exists already; its password is not shown again "
                "(reset it with `python manage.py changepassword <username>`)."
            )
            return
        given: str | None = options["password"]
        password = given if given is not None else secrets.token_urlsafe(12)
        candidate = user_model(username=options["username"], email=options["email"])
        try:
            candidate.full_clean(exclude=["password"])
            if given is not None:
                password_validation.validate_password(given, user=candidate)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        user = user_model._default_manager.create_superuser(
            username=options["username"], email=options["email"], password=password
        )
        user_roles_set(user=user, roles=[ADMINISTRATOR])
        if given is not None:
            self.stdout.write(self.style.SUCCESS("Administrator account created:"))
            self.stdout.write(f"    username: {user.get_username()}")
            self.stdout.write("    password: (the one given; not shown)")
            return
        self.stdout.write(self.style.SUCCESS("Administrator account created (shown only once):"))
        self.stdout.write(f"    username: {user.get_username()}")
        self.stdout.write(f"    password: {password}")
