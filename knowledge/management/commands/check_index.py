from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge import services
from knowledge.models import KnowledgeBase


class Command(BaseCommand):
    help = (
        "Compare each knowledge base's passages in the database with its vector index; exits "
        "with status 1 on drift (fix it with manage.py reindex <knowledge base>)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("knowledge_base", nargs="*", help="ids (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        bases = KnowledgeBase.objects.order_by("pk")
        if options["knowledge_base"]:
            bases = bases.filter(pk__in=options["knowledge_base"])
        drifted = 0
        for base in bases:
            drift = services.knowledge_base_index_drift(base=base)
            if drift["missing"] or drift["extra"]:
                drifted += 1
                self.stdout.write(
                    f"{base.pk} {base.name!r}: {len(drift['missing'])} passages missing from "
                    f"the index, {len(drift['extra'])} index entries without a passage"
                )
            else:
                self.stdout.write(f"{base.pk} {base.name!r}: in step")
        if drifted:
            raise CommandError(f"{drifted} knowledge base(s) drifted: run manage.py reindex")
