"""Websocket consumers for a run's live curves and a project's live run list.

/ws/runs/<id>/?after=SEQ first sends the stored points with seq > SEQ, then
live points. It joins the run's group before reading the database and drops
live points it has already sent, so a reconnect sees no gap and no duplicate.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from projects.permissions import can_view
from training import events
from training.models import Metric, Run

# Stored points sent per message while catching up.
CATCH_UP_BATCH = 2000
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _load_run(run_id: int, user):
    run = Run.objects.select_related("project").filter(pk=run_id).first()
    if run is None:
        return None, CLOSE_NOT_FOUND
    if not can_view(user, run.project):
        return None, CLOSE_FORBIDDEN
    return run, None


@database_sync_to_async
def _stored_points(run_id: int, after: int, limit: int) -> list[dict]:
    rows = (Metric.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")
            .values_list("seq", "key", "step", "epoch", "value", "nonfinite", "reported_at")[:limit])
    return [events.metric_point(*row) for row in rows]


@database_sync_to_async
def _state(run_id: int) -> dict:
    return events.state_message(Run.objects.get(pk=run_id))


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        run, close_code = await _load_run(self.run_id, self.scope.get("user"))
        if run is None:
            await self.close(code=close_code)
            return
        self.group = events.run_group(self.run_id)
        self.last_sent = self._after_from_query()
        self.catching_up = True
        self.held: list[dict] = []
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await _state(self.run_id))
        await self._catch_up()

    def _after_from_query(self) -> int:
        from urllib.parse import parse_qs

        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            return max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            return 0

    async def _catch_up(self):
        while True:
            points = await _stored_points(self.run_id, self.last_sent, CATCH_UP_BATCH)
            if not points:
                break
            await self.send_json(events.metrics_message(points))
            self.last_sent = points[-1]["seq"]
        self.catching_up = False
        held, self.held = self.held, []
        for message in held:
            await self._forward(message)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_metrics(self, message):
        if self.catching_up:
            self.held.append(message)
            return
        await self._forward(message)

    async def _forward(self, message):
        points = [p for p in message["points"] if p["seq"] > self.last_sent]
        if not points:
            return
        if points[0]["seq"] != self.last_sent + 1:
            # A batch went missing on the channel layer (capacity, expiry): read the gap from the database.
            points = await _stored_points(self.run_id, self.last_sent, CATCH_UP_BATCH)
        await self.send_json(events.metrics_message(points))
        self.last_sent = points[-1]["seq"]

    async def run_state(self, message):
        await self.send_json(message)


@database_sync_to_async
def _may_view_project(project_id: int, user) -> bool:
    from projects.models import Project

    project = Project.objects.filter(pk=project_id).first()
    return project is not None and can_view(user, project)


class ProjectRunsConsumer(AsyncJsonWebsocketConsumer):
    """Pushes every state change of the project's runs, for the live run list."""

    async def connect(self):
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        if not await _may_view_project(project_id, self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = events.project_runs_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_state(self, message):
        await self.send_json(message)

    async def run_metrics(self, message):
        pass
