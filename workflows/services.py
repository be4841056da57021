"""Writes for workflows and model endpoints. Audit rows come from the audit registry,
inside the same transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from assistant_site.sharing import owner_permissions_grant
from workflows.models import ModelEndpoint, Workflow


def workflow_create(*, actor: Any, name: str, description: str = "") -> Workflow:
    with transaction.atomic():
        workflow = Workflow.objects.create(name=name, description=description, created_by=actor)
        owner_permissions_grant(user=actor, obj=workflow)
    return workflow


def workflow_update(*, workflow: Workflow, data: dict[str, Any]) -> Workflow:
    with transaction.atomic():
        for field in ("name", "description"):
            if field in data:
                setattr(workflow, field, data[field])
        workflow.save()
    return workflow


def workflow_delete(*, workflow: Workflow) -> None:
    with transaction.atomic():
        workflow.delete()


def model_endpoint_create(*, actor: Any, data: dict[str, Any]) -> ModelEndpoint:
    with transaction.atomic():
        endpoint = ModelEndpoint.objects.create(created_by=actor, **data)
        owner_permissions_grant(user=actor, obj=endpoint)
    return endpoint


def model_endpoint_update(*, endpoint: ModelEndpoint, data: dict[str, Any]) -> ModelEndpoint:
    with transaction.atomic():
        for field, value in data.items():
            setattr(endpoint, field, value)
        endpoint.save()
    return endpoint


def model_endpoint_delete(*, endpoint: ModelEndpoint) -> None:
    with transaction.atomic():
        endpoint.delete()
