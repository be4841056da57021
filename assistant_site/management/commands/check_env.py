from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant_site.environment import DEFAULT_TIMEOUT_S, Result, Status, run_checks


class Command(BaseCommand):
    help = (
        "Check this installation: Python, Node.js and npm, a GPU, the database, Redis, the "
        "Celery broker, Chroma, every enabled model endpoint, disk space and the editor "
        "bundle. One row per check (OK, INFO, WARN or FAIL) with what to do about a problem. "
        "Exits with 1 when a check fails. docs/operations.md explains each row."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_S,
            help=f"seconds each check may take (default {DEFAULT_TIMEOUT_S:g}); they run at once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        timeout: float = options["timeout"]
        if not 0 < timeout <= 600:
            raise CommandError("--timeout must be more than 0 and at most 600 seconds")
        rows = run_checks(timeout=timeout)
        counts = Counter(str(row.status) for row in rows)
        failed = counts[Status.FAIL]
        if options["json"]:
            summary = {
                "ok": not failed,
                "counts": {str(status): counts[status] for status in Status},
                "checks": [row.as_dict() for row in rows],
            }
            self.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2))
        else:
            self._table(rows)
            self.stdout.write(
                ", ".join(f"{counts[status]} {status}" for status in Status if counts[status])
            )
        if failed:
            raise CommandError(f"{failed} check{'s' if failed > 1 else ''} failed", returncode=1)

    def _table(self, rows: list[Result]) -> None:
        width = max(len("check"), *(len(row.name) for row in rows))
        styles = {
            Status.OK: self.style.SUCCESS,
            Status.INFO: self.style.HTTP_INFO,
            Status.WARN: self.style.WARNING,
            Status.FAIL: self.style.ERROR,
        }
        self.stdout.write(f"{'check':<{width}}  status  detail")
        for row in rows:
            status = styles[row.status](f"{row.status!s:<6}")
            self.stdout.write(f"{row.name:<{width}}  {status}  {row.detail}")
            if row.fix and row.status in (Status.WARN, Status.FAIL):
                self.stdout.write(f"{'':<{width}}  {'':<6}  fix: {row.fix}")
