from __future__ import annotations

import logging

from celery import shared_task

from connectors import services
from connectors.models import InboundEvent

logger = logging.getLogger(__name__)


@shared_task(name="connectors.event_process", acks_late=True, ignore_result=True)
def event_process_task(event_id: int) -> None:
    """Answer one stored platform event (a redelivered task finds it claimed already)."""
    try:
        services.event_process(event_id=event_id)
    except InboundEvent.DoesNotExist:
        logger.warning("inbound event %s no longer exists", event_id)


@shared_task(name="connectors.run_replies_deliver", acks_late=True, ignore_result=True)
def run_replies_deliver_task(run_id: str) -> None:
    """Deliver a finished run's replies (idempotent: one delivery per reply)."""
    services.run_replies_deliver(run_id=run_id)


@shared_task(name="connectors.deliveries_flush", acks_late=True, ignore_result=True)
def deliveries_flush_task(connector_id: int, chat_id: str) -> None:
    """Send a chat's open deliveries in order; retries are scheduled by the service."""
    services.deliveries_flush(connector_id=connector_id, chat_id=chat_id)


@shared_task(name="connectors.sweep", ignore_result=True)
def connectors_sweep_task() -> dict[str, int]:
    """Periodic (beat): re-enqueue what lost tasks left behind, apply retention."""
    return services.connectors_sweep()
