"""Reads that apply object permissions: what a user may see of workflows and their runs."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from assistant_site.permissions import viewable
from workflows.models import Run, Workflow


def workflow_list(*, user: Any) -> QuerySet[Workflow]:
    return viewable(user, Workflow.objects.all())


def run_list(*, user: Any) -> QuerySet[Run]:
    """Runs of the workflows the user may view (a run is as visible as its workflow)."""
    return Run.objects.filter(workflow__in=workflow_list(user=user))
