from __future__ import annotations

import getpass
import sys
from io import StringIO
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    no_translations,
)
from django.urls import reverse

from assistant_site.checks import NOT_CONFIGURED, chroma_check, service_address
from assistant_site.roles import ROLES

CHROMA_TIMEOUT_S = 5.0


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


class Command(BaseCommand):
    help = (
        "Set up a fresh installation in one go: the roles, the first administrator (asked for, "
        "or with --no-input from --username, --email and --password or a generated password "
        "printed once), and the samples: the demo workflows, the demo knowledge base with "
        "sample documents indexed, and a web chat connector for the knowledge Q&A demo. "
        "Idempotent: what exists is left alone; --skip-samples leaves the samples out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="ask nothing: the administrator comes from --username, --email, --password",
        )
        parser.add_argument("--username", help="the first administrator's user name")
        parser.add_argument("--email", help="the first administrator's e-mail address")
        parser.add_argument(
            "--password",
            help="with --no-input: the administrator's password (default: a generated one, "
            "printed once). It shows in the process list: prefer the default.",
        )
        parser.add_argument(
            "--skip-samples",
            action="store_true",
            help="no demo workflows, knowledge base, sample documents or web chat connector",
        )

    @no_translations  # validation messages in English, whatever language is active
    def handle(self, *args: Any, **options: Any) -> None:
        interactive: bool = options["interactive"]
        if not interactive and not options["username"]:
            raise CommandError(
                "--no-input needs --username (and optionally --email and --password)"
            )
        if interactive and options["password"] is not None:
            raise CommandError(
                "--password goes with --no-input; without it the password is asked for"
            )
        summary: list[tuple[str, str]] = []
        changed = False

        call_command("create_roles", stdout=StringIO())
        summary.append(("roles", f"up to date: {', '.join(role.name for role in ROLES)}"))

        admin, created = self._administrator(options, interactive)
        changed |= created
        state = "created" if created else "exists already"
        summary.append(("administrator", f"{state}: {admin.get_username()}"))

        chat_url = ""
        if options["skip_samples"]:
            summary.append(("samples", "skipped (--skip-samples)"))
        else:
            sample_rows, samples_changed, chat_url = self._samples(admin)
            summary.extend(sample_rows)
            changed |= samples_changed

        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Set-up summary:"))
        width = max(len(what) for what, _state in summary)
        for what, state in summary:
            self.stdout.write(f"  {what:<{width}}  {state}")
        if not changed:
            self.stdout.write("Nothing changed: this installation was set up already.")
        site = settings.SITE_URL.rstrip("/")
        self.stdout.write("")
        self.stdout.write(f"  studio:         {site}{reverse('frontend:studio')}")
        if chat_url:
            connector_id = chat_url.rstrip("/").rsplit("/", 1)[-1]
            widget = f"{site}{reverse('frontend:widget-loader')}"
            self.stdout.write(f"  web chat page:  {chat_url}")
            self.stdout.write(
                f'  embed it:       <script src="{widget}" data-connector="{connector_id}" '
                "async></script>"
            )

    # --- the administrator -------------------------------------------------------------------

    def _administrator(self, options: dict[str, Any], interactive: bool) -> tuple[Any, bool]:
        users = get_user_model()._default_manager
        existing = users.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            call_command("ensure_admin", stdout=self.stdout)  # says so, and how to reset it
            wanted = options["username"]
            if wanted and wanted != existing.get_username():
                self.stdout.write(f"({existing.get_username()} is; {wanted} is not created.)")
            return existing, False
        if interactive:
            username, email, password = self._ask(options)
        else:
            username, email, password = (
                options["username"],
                options["email"] or "",
                options["password"],
            )
        call_command(
            "ensure_admin", username=username, email=email, password=password, stdout=self.stdout
        )
        return users.get(username=username), True

    def _ask(self, options: dict[str, Any]) -> tuple[str, str, str | None]:
        if not _stdin_is_terminal():
            raise CommandError(
                "no terminal to ask on: use --no-input --username NAME [--email ADDRESS] "
                "[--password PASSWORD]"
            )
        try:
            username = options["username"] or input("Administrator's user name [admin]: ")
            username = username.strip() or "admin"
            email = options["email"]
            if email is None:
                email = input("E-mail address (optional): ").strip()
            while True:
                password = getpass.getpass("Password (empty: generate one, shown once): ")
                if not password:
                    return username, email, None
                if getpass.getpass("Password (again): ") != password:
                    self.stderr.write("The two passwords differ; try again.")
                    continue
                candidate = get_user_model()(username=username, email=email)
                try:
                    password_validation.validate_password(password, user=candidate)
                except ValidationError as exc:
                    self.stderr.write(" ".join(exc.messages))
                    continue
                return username, email, password
        except EOFError as exc:
            raise CommandError("cancelled: no answer") from exc

    # --- the samples -------------------------------------------------------------------------

    def _samples(self, admin: Any) -> tuple[list[tuple[str, str]], bool, str]:
        from connectors.services import demo_webchat_ensure
        from knowledge.models import KnowledgeBase
        from workflows import services as workflows
        from workflows.exceptions import WorkflowInvalidError

        rows: list[tuple[str, str]] = []
        changed = False
        had_base = KnowledgeBase.objects.filter(name=workflows.DEMO_KNOWLEDGE_BASE).exists()
        try:
            published = workflows.demo_content_load(owner=admin)
        except WorkflowInvalidError as exc:
            details = "; ".join(f"{p.get('node_id') or '-'}: {p['message']}" for p in exc.problems)
            raise CommandError(f"a demo workflow is invalid: {details}") from exc
        changed |= bool(published) or not had_base
        rows.append(
            (
                "demo workflows",
                f"published: {', '.join(published)}" if published else "exist already",
            )
        )
        rows.append(
            (
                "knowledge base",
                f"{'exists already' if had_base else 'created'}: {workflows.DEMO_KNOWLEDGE_BASE}",
            )
        )

        unavailable = self._index_unavailable()
        if unavailable:
            rows.append(
                (
                    "sample documents",
                    f"not indexed: {unavailable}; run init_assistant again once it answers",
                )
            )
        else:
            documents = workflows.demo_documents_load(
                owner=admin, progress=lambda name: self.stdout.write(f"indexing {name}...")
            )
            changed |= bool(documents.indexed)
            states = []
            if documents.indexed:
                states.append(f"indexed: {', '.join(documents.indexed)}")
            if documents.present:
                states.append(f"there already: {', '.join(documents.present)}")
            if documents.failed:
                states.append(f"FAILED: {'; '.join(documents.failed)}")
            rows.append(("sample documents", "; ".join(states) or "none"))

        qa = workflows.demo_workflow_get(stem="knowledge_qa")
        if qa is None:
            rows.append(("web chat connector", "not made: the knowledge Q&A demo is missing"))
            return rows, changed, ""
        if not settings.SECRETS_KEYS:
            # A connector's credentials are stored encrypted, even when there are none.
            rows.append(
                (
                    "web chat connector",
                    "not made: SECRETS_KEYS is not set (manage.py generate_secrets_key)",
                )
            )
            return rows, changed, ""
        connector, created = demo_webchat_ensure(owner=admin, workflow=qa)
        changed |= created
        state = "created" if created else "exists already"
        rows.append(
            ("web chat connector", f"{state}: {connector.name} (#{connector.pk}) -> {qa.name}")
        )
        site = settings.SITE_URL.rstrip("/")
        return rows, changed, f"{site}{reverse('frontend:chat', args=[connector.pk])}"

    def _index_unavailable(self) -> str:
        """Why the sample documents cannot be indexed now ("" when they can)."""
        try:
            if chroma_check(CHROMA_TIMEOUT_S).startswith(NOT_CONFIGURED):
                return "CHROMA_URL is not set"
        except Exception as exc:  # any failure to answer: the reason is reported, not raised
            return (
                f"Chroma does not answer at {service_address(settings.CHROMA_URL)} "
                f"({type(exc).__name__})"
            )
        return ""
