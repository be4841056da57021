"""Register, remove or show a Telegram connector's webhook: the command-line twin of the
admin actions (audited the same way)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from assistant_site.http import OutboundHttpError
from connectors import services
from connectors.base import DeliveryError
from connectors.models import Connector
from connectors.registry import connector_settings
from connectors.telegram import api as telegram_api


class Command(BaseCommand):
    help = (
        "Call setWebhook with a Telegram connector's callback URL and secret (default), "
        "deleteWebhook (--remove), or show getWebhookInfo (--info)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("connector", help="the connector's id or name")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--remove", action="store_true", help="call deleteWebhook")
        action.add_argument("--info", action="store_true", help="show getWebhookInfo")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["connector"]
        connector = (
            Connector.objects.filter(pk=int(key)).first()
            if key.isdigit()
            else Connector.objects.filter(name=key).first()
        )
        if connector is None:
            raise CommandError(f"no connector has the id or name {key!r}")
        if connector.platform != "telegram":
            raise CommandError(
                f"{connector.name} is a {connector.platform} connector, not Telegram"
            )
        try:
            if options["info"]:
                info = services.run_async(
                    telegram_api.get_webhook_info(connector_settings(connector))
                )
                for field, value in info.model_dump().items():
                    self.stdout.write(f"{field}: {value}")
                return
            url = services.telegram_webhook_set(
                connector=connector, actor=None, remove=options["remove"]
            )
        except (DeliveryError, OutboundHttpError) as exc:
            raise CommandError(f"Telegram refused: {exc}") from exc
        if options["remove"]:
            self.stdout.write(self.style.SUCCESS(f"{connector.name}: webhook removed"))
        else:
            self.stdout.write(self.style.SUCCESS(f"{connector.name}: Telegram now posts to {url}"))
