"""Hooks other apps use to follow runs without the workflows app knowing them (connectors
deliver replies and stream answers through these; import-linter keeps the direction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from django.dispatch import Signal

if TYPE_CHECKING:
    from workflows.engine.executor import TraceEvent
    from workflows.models import Run

# Sent after a run's result and trace are committed, with ``run``. Receivers must be quick
# (enqueue a task): they run in the worker thread that executed the run.
run_finished = Signal()


class RunObserver(Protocol):
    """Follows one run's trace events while it executes, inside the worker's event loop."""

    def on_event(self, event: TraceEvent) -> None:
        """Called for every event, in order; must not block (schedule work on the loop)."""
        ...

    async def close(self) -> None:
        """The run is over: finish pending work. Errors are logged, never fail the run."""
        ...


# Called (in the worker, before the run executes, where the ORM may be used) for each run;
# answer an observer for the runs you follow, None for the rest.
RunObserverFactory = Callable[["Run"], "RunObserver | None"]
run_observer_factories: list[RunObserverFactory] = []
