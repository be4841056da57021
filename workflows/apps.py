from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = _("Workflows")

    def ready(self) -> None:
        from audit import registry
        from workflows.models import Credential, ModelEndpoint, SensitiveWordList, Workflow

        # Draft saves are frequent and large: the trail shows the revision, not the graph.
        registry.register(Workflow, exclude=("draft",))
        registry.register(ModelEndpoint)
        registry.register(Credential)
        # A list can hold 100,000 words: the trail records that the words changed (masked, as
        # for a secret), not two copies of the whole list on every edit.
        registry.register(SensitiveWordList, masked=("words",))
