"""Live run traces over WebSocket: /ws/runs/<run id>/.

On connect the consumer sends what is stored already (so a late watcher, or a replay of a
finished run, sees the whole trace), then every event as the worker reports it. Only users
who may view the run's workflow are accepted; others are closed with code 4404, as if the
run did not exist.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from workflows.selectors import run_list

CLOSE_NOT_FOUND = 4404


def run_group(run_id: Any) -> str:
    return f"run.{run_id}"


def _load_trace(user: Any, run_id: str) -> dict[str, Any] | None:
    if not user.is_authenticated:
        return None
    run = run_list(user=user).filter(pk=run_id).prefetch_related("node_runs").first()
    if run is None:
        return None
    return {
        "type": "snapshot",
        "run": {"id": str(run.pk), "status": run.status, "output": run.output, "error": run.error},
        "nodes": [
            {
                "node_id": n.node_id,
                "status": n.status,
                "outputs": n.outputs,
                "error": n.error,
                "duration_ms": n.duration_ms,
                "branch": n.branch,
            }
            for n in run.node_runs.all()
        ],
    }


_stored_trace = database_sync_to_async(_load_trace)


class RunTraceConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        run_id = str(self.scope["url_route"]["kwargs"]["run_id"])
        snapshot: dict[str, Any] | None = await _stored_trace(self.scope.get("user"), run_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = run_group(run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Watching is read-only; the only message a client may send is a keep-alive.
        if content != {"type": "ping"}:
            await self.send_json({"type": "error", "detail": "this socket only streams events"})
            return
        await self.send_json({"type": "pong"})

    async def trace_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": message["event"]})

    async def trace_events(self, message: dict[str, Any]) -> None:
        # The worker batches events that arrive together; watchers get them one by one.
        for event in message["events"]:
            await self.send_json({"type": "event", "event": event})
