from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import node_types


class Command(BaseCommand):
    help = (
        f"Regenerate {node_types.STRINGS_MODULE}: the node types' titles and descriptions "
        "(config schemas included), marked for makemessages. Run makemessages afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; exit with an error if the file is out of date",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = node_types.STRINGS_PATH
        source = node_types.strings_module(node_types.shipped_node_types())
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if options["check"]:
            if current != source:
                raise CommandError(
                    f"{node_types.STRINGS_MODULE} is out of date: run "
                    f"`{node_types.REGENERATE_COMMAND}`"
                )
            return
        if current == source:
            self.stdout.write(f"{node_types.STRINGS_MODULE} is up to date")
            return
        path.write_text(source, encoding="utf-8")
        count = len(node_types.schema_strings(node_types.shipped_node_types()))
        self.stdout.write(f"wrote {node_types.STRINGS_MODULE} ({count} strings)")
