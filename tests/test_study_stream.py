"""The study streams /ws/studies/<id>/ and /ws/projects/<id>/studies/, through Channels' in-memory layer."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from studio.asgi import application
from tests.test_api_runs import make_dataset
from tests.test_live_stream import ORIGIN_HEADERS, memory_layer, token_for  # noqa: F401
from training import services as run_services
from training.models import Run, RunStatus
from tuning import services

SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


@pytest.fixture
def study(transactional_db, project, owner):
    digits = make_dataset(project, "digits")
    return services.create_study(project, digits, name="streamed", user=owner, base_config={"epochs": 2},
                                 space=SPACE, n_trials=3, parallel=2, pruner="none")


def socket_for(path, token):
    return WebsocketCommunicator(application, f"{path}?token={token}", headers=ORIGIN_HEADERS)


def finish(run_id, accuracy):
    Run.objects.filter(pk=run_id).update(status=RunStatus.RUNNING)
    run_services.finish_run(run_id, RunStatus.SUCCEEDED, summary={"val/accuracy": accuracy})


async def receive_until(socket, predicate, limit=20):
    messages = []
    for _ in range(limit):
        message = await socket.receive_json_from(timeout=5)
        messages.append(message)
        if predicate(message):
            return messages
    raise AssertionError(f"no matching message in {messages}")


def test_snapshot_then_live_trial_updates(memory_layer, study, viewer):  # noqa: F811
    token = token_for(viewer)
    first = study.trials.get(number=0)

    async def scenario():
        socket = socket_for(f"/ws/studies/{study.pk}/", token)
        connected, _ = await socket.connect()
        assert connected
        snapshot = [await socket.receive_json_from() for _ in range(3)]
        await database_sync_to_async(finish)(first.run_id, 0.9)
        live = await receive_until(socket, lambda m: m["type"] == "trial.state" and m["trial"]["number"] == 2)
        await socket.disconnect()
        return snapshot, live

    snapshot, live = async_to_sync(scenario)()

    assert snapshot[0]["type"] == "study.state"
    assert snapshot[0]["study"]["trials_started"] == 2
    assert [(m["type"], m["trial"]["number"]) for m in snapshot[1:]] == [("trial.state", 0), ("trial.state", 1)]
    assert snapshot[1]["trial"]["params"] == first.params
    kinds = [m["type"] for m in live]
    assert "run.state" in kinds, "the trial run's own state reaches the study page"
    done = next(m["trial"] for m in live if m["type"] == "trial.state" and m["trial"]["number"] == 0)
    assert done["state"] == "complete"
    assert done["values"] == [0.9]
    best = [m["study"] for m in live if m["type"] == "study.state"][-1]
    assert best["best_values"] == [0.9]
    assert best["best_trial"] == 0
    assert live[-1]["trial"]["state"] == "running"


@pytest.mark.parametrize("who, code", [("outsider", 4403), ("anonymous", 4403)])
def test_stranger_rejected(memory_layer, study, outsider, who, code):  # noqa: F811
    token = token_for(outsider) if who == "outsider" else "not-a-token"

    async def scenario():
        socket = socket_for(f"/ws/studies/{study.pk}/", token)
        result = await socket.connect()
        await socket.disconnect()
        return result

    assert async_to_sync(scenario)() == (False, code)


def test_missing_study_rejected(memory_layer, transactional_db, owner):  # noqa: F811
    token = token_for(owner)

    async def scenario():
        socket = socket_for("/ws/studies/999999/", token)
        result = await socket.connect()
        await socket.disconnect()
        return result

    assert async_to_sync(scenario)() == (False, 4404)


def test_project_stream_sends_study_states(memory_layer, study, project, viewer, outsider):  # noqa: F811
    viewer_token, outsider_token = token_for(viewer), token_for(outsider)

    async def scenario():
        rejected = socket_for(f"/ws/projects/{project.pk}/studies/", outsider_token)
        rejection = await rejected.connect()
        socket = socket_for(f"/ws/projects/{project.pk}/studies/", viewer_token)
        connected, _ = await socket.connect()
        assert connected
        await database_sync_to_async(services.stop_study)(study)
        messages = await receive_until(socket, lambda m: m["study"]["state"] == "stopped")
        await socket.disconnect()
        return rejection, messages

    rejection, messages = async_to_sync(scenario)()

    assert rejection == (False, 4403)
    assert {m["type"] for m in messages} == {"study.state"}
    assert messages[0]["study"]["state"] == "stopping"
    assert messages[-1]["study"]["trials_finished"] == 2
