from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from knowledge import services
from knowledge.management.commands.ingest import _base


class Command(BaseCommand):
    help = "Rebuild a knowledge base's vector index from its passages (after an embedder change)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("knowledge_base", help="id or exact name")

    def handle(self, *args: Any, **options: Any) -> None:
        base = _base(options["knowledge_base"])
        total = services.knowledge_base_reindex(base=base)
        self.stdout.write(f"{base.name!r}: {total} passages indexed")
