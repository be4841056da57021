from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from knowledge import services
from knowledge.exceptions import KnowledgeError
from knowledge.models import Document, KnowledgeBase

SUFFIXES = {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm", ".md", ".markdown", ".txt"}


class Command(BaseCommand):
    help = (
        "Upload every document of a folder (recursively) into a knowledge base and ingest them "
        "here, one after the other, with a progress bar; failures are listed at the end."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("knowledge_base", help="id or exact name")
        parser.add_argument("folder")
        parser.add_argument("--user", help="username recorded as the uploader")

    def handle(self, *args: Any, **options: Any) -> None:
        base = _base(options["knowledge_base"])
        folder = Path(options["folder"])
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        actor = None
        if options["user"]:
            actor = get_user_model()._default_manager.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"no user is named {options['user']!r}")
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not paths:
            raise CommandError(f"no documents in {folder} ({', '.join(sorted(SUFFIXES))})")
        failed: list[str] = []
        chunks = 0
        with tqdm(paths, unit="doc", file=self.stderr) as progress:
            for path in progress:
                progress.set_postfix_str(path.name[:40])
                try:
                    with path.open("rb") as handle:
                        document = services.document_upload(
                            base=base, upload=File(handle, name=path.name), actor=actor, queue=False
                        )
                except KnowledgeError as exc:
                    failed.append(str(exc))
                    continue
                document = services.document_ingest(document_id=str(document.pk))
                if document.status == Document.Status.FAILED:
                    failed.append(f"{path.name}: {document.error}")
                chunks += document.chunk_count
        self.stdout.write(
            f"{len(paths) - len(failed)} of {len(paths)} documents indexed into "
            f"{base.name!r} ({chunks} passages)"
        )
        for line in failed:
            self.stdout.write(f"  failed: {line}")


def _base(value: str) -> KnowledgeBase:
    bases = KnowledgeBase.objects.filter(pk=int(value)) if value.isdigit() else None
    if not bases:
        bases = KnowledgeBase.objects.filter(name=value)
    if bases.count() != 1:
        raise CommandError(f"no single knowledge base is {value!r} (give its id)")
    return bases.get()
