from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify_stored_chain


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chain and report the first altered, inserted or "
        "deleted entry. Prints the head hash: keep it somewhere else to detect a rewritten tail."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_stored_chain()
        if report.problem is not None:
            raise CommandError(
                f"audit chain broken ({report.problem.kind}): {report.problem.message}"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"audit chain intact: {report.checked} entries, head hash {report.head_hash}"
            )
        )
