from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = _("Connectors")

    def ready(self) -> None:
        from audit import registry
        from connectors.models import Connector
        from connectors.services import run_finished_receiver
        from connectors.streaming import chat_streamer_for
        from workflows.signals import run_finished, run_observer_factories

        # Credentials are encrypted, hence masked in the trail by the registry.
        registry.register(Connector, exclude=("last_error", "last_error_at"))
        run_finished.connect(run_finished_receiver, dispatch_uid="connectors.run_finished")
        if chat_streamer_for not in run_observer_factories:
            run_observer_factories.append(chat_streamer_for)
