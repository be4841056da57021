from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import services
from workflows.exceptions import WorkflowInvalidError


class Command(BaseCommand):
    help = (
        "Create and publish the demo workflows (knowledge Q&A, intent -> API call, a scheduled "
        "report) and the demo knowledge base. Idempotent: existing ones are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="username (default: the first superuser)")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()._default_manager
        owner = (
            users.filter(username=options["owner"]).first()
            if options["owner"]
            else users.filter(is_superuser=True).order_by("pk").first()
        )
        if owner is None:
            raise CommandError("no such user (create an administrator first: ensure_admin)")
        try:
            created = services.demo_content_load(owner=owner)
        except WorkflowInvalidError as exc:
            details = "; ".join(f"{p.get('node_id') or '-'}: {p['message']}" for p in exc.problems)
            raise CommandError(f"a demo workflow is invalid: {details}") from exc
        if created:
            self.stdout.write(f"Demo workflows published: {', '.join(created)}")
        else:
            self.stdout.write("Demo workflows exist already.")
