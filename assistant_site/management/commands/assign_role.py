from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant_site.roles import ROLES_BY_NAME, user_roles_set


class Command(BaseCommand):
    help = "Set a user's roles (replacing their current roles); staff access follows the roles."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("roles", nargs="*", help=", ".join(ROLES_BY_NAME))

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"no user is named {options['username']!r}") from None
        try:
            user_roles_set(user=user, roles=options["roles"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{user.get_username()}: {', '.join(options['roles']) or 'no roles'}")
