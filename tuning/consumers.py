"""Websocket consumers of studies.

/ws/studies/<id>/ sends the study's state and every trial on connect, then
each change: study.state, trial.state, and run.state of the trials' runs
(their epochs, for the progress column). A client that reconnects gets the
whole picture again, so it never misses a trial.
/ws/projects/<id>/studies/ sends study.state for every study of the project.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from projects.permissions import can_view
from training.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, _may_view_project
from tuning import events
from tuning.models import Study


@database_sync_to_async
def _snapshot(study_id: int, user):
    study = Study.objects.select_related("project", "best_trial").filter(pk=study_id).first()
    if study is None:
        return None, CLOSE_NOT_FOUND
    if not can_view(user, study.project):
        return None, CLOSE_FORBIDDEN
    messages = [events.study_message(study)]
    messages += [events.trial_message(t) for t in study.trials.select_related("run").order_by("number")]
    return messages, None


class StudyConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        study_id = self.scope["url_route"]["kwargs"]["study_id"]
        self.group = events.study_group(study_id)
        # Join before reading, so a change made meanwhile arrives after the snapshot, never lost.
        await self.channel_layer.group_add(self.group, self.channel_name)
        messages, close_code = await _snapshot(study_id, self.scope.get("user"))
        if messages is None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            del self.group
            await self.close(code=close_code)
            return
        await self.accept()
        for message in messages:
            await self.send_json(message)

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def study_state(self, message):
        await self.send_json(message)

    async def trial_state(self, message):
        await self.send_json(message)

    async def run_state(self, message):
        await self.send_json(message)


class ProjectStudiesConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        project_id = self.scope["url_route"]["kwargs"]["project_id"]
        if not await _may_view_project(project_id, self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = events.project_studies_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def study_state(self, message):
        await self.send_json(message)
