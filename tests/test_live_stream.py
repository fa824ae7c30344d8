"""The live streams: /ws/runs/<id>/ and /ws/projects/<id>/runs/.

The first tests drive the consumers through Channels' WebsocketCommunicator
with the in-memory channel layer. The integration test runs the real stack:
a Celery worker trains a run, Daphne serves the websocket, and a `websockets`
client logged in with an API token follows it.
"""

import asyncio
import json
import time
from urllib.parse import urlparse

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from studio.asgi import application
from training import events
from training.models import Metric, Run, RunStatus
from training.services import cancel_run, create_run

# Sockets of these tests are opened from the page's own origin, as a browser would.
ORIGIN_HEADERS = [(b"origin", b"http://testserver"), (b"host", b"testserver")]


@pytest.fixture
def memory_layer(settings):
    """The in-memory channel layer, fresh for each test."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def stream_run(transactional_db, project, digits_dataset, owner):
    """Return a queued run of `project`.

    The database is transactional because database_sync_to_async closes old
    connections, which breaks the open transaction of the plain `db` fixture.
    """
    return create_run(project, digits_dataset, {"model": "cnn", "epochs": 2}, user=owner, name="streamed")


def token_for(user) -> str:
    return Token.objects.create(user=user).key


def store_points(run: Run, first_seq: int, last_seq: int, key: str = "train/loss") -> None:
    """Store one point per seq from first_seq to last_seq, at step = seq, value = 1 / seq."""
    Metric.objects.bulk_create([
        Metric(run=run, seq=seq, key=key, step=seq, epoch=1, value=1 / seq, reported_at=1_700_000_000 + seq)
        for seq in range(first_seq, last_seq + 1)
    ])
    Run.objects.filter(pk=run.pk).update(last_seq=last_seq)


def live_point(seq: int, key: str = "train/loss") -> dict:
    return events.metric_point(seq, key, seq, 1, 1 / seq, "", 1_700_000_000 + seq)


def run_socket(run: Run, token: str, after: int | None = None) -> WebsocketCommunicator:
    path = f"/ws/runs/{run.pk}/?token={token}"
    if after is not None:
        path += f"&after={after}"
    return WebsocketCommunicator(application, path, headers=ORIGIN_HEADERS)


def seqs_of(message: dict) -> list[int]:
    assert message["type"] == "run.metrics"
    return [point["seq"] for point in message["points"]]


def test_stored_points_then_live_point(memory_layer, stream_run, owner):
    store_points(stream_run, 1, 5)
    token = token_for(owner)

    async def scenario():
        socket = run_socket(stream_run, token, after=2)
        connected, _ = await socket.connect()
        assert connected
        state = await socket.receive_json_from()
        stored = await socket.receive_json_from()
        await get_channel_layer().group_send(events.run_group(stream_run.pk),
                                             events.metrics_message([live_point(6)]))
        pushed = await socket.receive_json_from()
        await socket.disconnect()
        return state, stored, pushed

    state, stored, pushed = async_to_sync(scenario)()

    assert state["type"] == "run.state"
    assert state["run"]["id"] == stream_run.pk
    assert state["run"]["status"] == "queued"
    assert state["run"]["last_seq"] == 5
    assert seqs_of(stored) == [3, 4, 5]
    assert stored["points"][0] == {"seq": 3, "key": "train/loss", "step": 3, "epoch": 1, "value": 1 / 3,
                                   "nonfinite": "", "t": 1_700_000_003.0}
    assert seqs_of(pushed) == [6]


def test_point_already_sent_not_repeated(memory_layer, stream_run, owner):
    store_points(stream_run, 1, 5)
    token = token_for(owner)

    async def scenario():
        socket = run_socket(stream_run, token, after=0)
        await socket.connect()
        await socket.receive_json_from()
        stored = await socket.receive_json_from()
        group = events.run_group(stream_run.pk)
        layer = get_channel_layer()
        # A batch that the catch-up already covered: nothing goes out.
        await layer.group_send(group, events.metrics_message([live_point(4), live_point(5)]))
        nothing_for_old_batch = await socket.receive_nothing(timeout=0.3)
        # A batch straddling the last seq sent: only the new point goes out.
        await layer.group_send(group, events.metrics_message([live_point(5), live_point(6), live_point(7)]))
        straddling = await socket.receive_json_from()
        nothing_after = await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()
        return stored, nothing_for_old_batch, straddling, nothing_after

    stored, nothing_for_old_batch, straddling, nothing_after = async_to_sync(scenario)()

    assert seqs_of(stored) == [1, 2, 3, 4, 5]
    assert nothing_for_old_batch
    assert seqs_of(straddling) == [6, 7]
    assert nothing_after


def test_lost_batch_read_from_database(memory_layer, stream_run, owner):
    store_points(stream_run, 1, 3)
    token = token_for(owner)

    async def scenario():
        socket = run_socket(stream_run, token)
        await socket.connect()
        await socket.receive_json_from()
        await socket.receive_json_from()
        # Points 4 and 5 were stored but their batch never reached the layer; 6 arrives live.
        await database_sync_to_async(store_points)(stream_run, 4, 6)
        await get_channel_layer().group_send(events.run_group(stream_run.pk),
                                             events.metrics_message([live_point(6)]))
        filled = await socket.receive_json_from()
        await socket.disconnect()
        return filled

    filled = async_to_sync(scenario)()

    assert seqs_of(filled) == [4, 5, 6]


def test_nan_point_arrives_as_null(memory_layer, stream_run, viewer):
    Metric.objects.create(run=stream_run, seq=1, key="train/loss", step=1, epoch=1, value=None, nonfinite="nan",
                          reported_at=1_700_000_001)
    Metric.objects.create(run=stream_run, seq=2, key="val/loss", step=1, epoch=1, value=None, nonfinite="-inf",
                          reported_at=1_700_000_002)
    token = token_for(viewer)

    async def scenario():
        socket = run_socket(stream_run, token)
        await socket.connect()
        await socket.receive_from()
        text = await socket.receive_from()
        await socket.disconnect()
        return text

    text = async_to_sync(scenario)()

    def reject_constant(name):
        raise AssertionError(f"{name} is not valid JSON")

    message = json.loads(text, parse_constant=reject_constant)
    assert message["points"][0]["value"] is None
    assert message["points"][0]["nonfinite"] == "nan"
    assert message["points"][1]["value"] is None
    assert message["points"][1]["nonfinite"] == "-inf"


@pytest.mark.parametrize("who", ["outsider", "anonymous"])
def test_stranger_rejected_with_4403(memory_layer, stream_run, outsider, who):
    token = token_for(outsider) if who == "outsider" else "not-a-token"

    async def scenario():
        socket = run_socket(stream_run, token)
        result = await socket.connect()
        await socket.disconnect()
        return result

    connected, code = async_to_sync(scenario)()

    assert connected is False
    assert code == 4403


def test_missing_run_rejected_with_4404(memory_layer, transactional_db, owner):
    token = token_for(owner)

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/runs/999999/?token={token}", headers=ORIGIN_HEADERS)
        result = await socket.connect()
        await socket.disconnect()
        return result

    connected, code = async_to_sync(scenario)()

    assert connected is False
    assert code == 4404


def test_project_stream_sends_state_changes(memory_layer, stream_run, viewer, outsider, project):
    viewer_token = token_for(viewer)
    outsider_token = token_for(outsider)

    async def scenario():
        rejected = WebsocketCommunicator(application, f"/ws/projects/{project.pk}/runs/?token={outsider_token}",
                                         headers=ORIGIN_HEADERS)
        rejection = await rejected.connect()
        socket = WebsocketCommunicator(application, f"/ws/projects/{project.pk}/runs/?token={viewer_token}",
                                       headers=ORIGIN_HEADERS)
        connected, _ = await socket.connect()
        assert connected
        await database_sync_to_async(cancel_run)(stream_run)
        message = await socket.receive_json_from()
        # Metric batches go to the run's page only, not to the project's list.
        await get_channel_layer().group_send(events.project_runs_group(project.pk),
                                             events.metrics_message([live_point(1)]))
        quiet = await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()
        return rejection, message, quiet

    rejection, message, quiet = async_to_sync(scenario)()

    assert rejection == (False, 4403)
    assert message["type"] == "run.state"
    assert message["run"]["id"] == stream_run.pk
    assert message["run"]["status"] == "cancelled"
    assert message["run"]["status_display"] == "Cancelled"
    assert quiet


# ---- The real stack ---------------------------------------------------------


async def follow_run(ws_url: str, origin: str, until_seq: int | None, timeout: float) -> tuple[list[dict], list[dict]]:
    """Collect (points, states) from a run socket until the run is final and its points have arrived.

    The points must reach `until_seq`, or the final state's last_seq when it is None. Anything sent in
    the next half second is collected too, so that a duplicate would show.
    """
    from websockets.asyncio.client import connect

    points, states = [], []
    deadline = time.monotonic() + timeout
    async with connect(ws_url, origin=origin, open_timeout=10) as socket:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"after {timeout}s: {len(points)} points, last state {states[-1:]}")
            try:
                message = json.loads(await asyncio.wait_for(socket.recv(), remaining))
            except TimeoutError:
                continue
            if message["type"] == "run.metrics":
                points.extend(message["points"])
            else:
                states.append(message["run"])
            final = states and states[-1]["status"] in ("succeeded", "failed", "cancelled")
            if not final or not points:
                continue
            target = until_seq if until_seq is not None else states[-1]["last_seq"]
            if points[-1]["seq"] >= target:
                break
        try:
            extra = json.loads(await asyncio.wait_for(socket.recv(), 0.5))
            if extra["type"] == "run.metrics":
                points.extend(extra["points"])
        except TimeoutError:
            pass
    return points, states


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_worker_run_streams_to_websocket_client(celery_worker_process, daphne_server, project, digits_dataset,
                                                owner):
    token = token_for(owner)
    run = create_run(project, digits_dataset,
                     {"model": "cnn", "conv_channels": [8, 16], "hidden_sizes": [32], "epochs": 2,
                      "batch_size": 128, "lr": 0.003},
                     user=owner, name="live digits")
    host = urlparse(daphne_server).netloc
    ws_url = f"ws://{host}/ws/runs/{run.pk}/?token={token}"

    points, states = asyncio.run(follow_run(ws_url, daphne_server, None, timeout=240))

    run.refresh_from_db()
    seqs = [point["seq"] for point in points]
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert seqs == list(range(1, run.last_seq + 1))
    assert Metric.objects.filter(run=run).count() == run.last_seq
    assert "train/loss" in {point["key"] for point in points}
    assert "val/accuracy" in {point["key"] for point in points}
    assert states[-1]["status"] == "succeeded"
    assert states[-1]["last_seq"] == run.last_seq
    # About 1,440 training examples in batches of 128: 12 steps per epoch.
    assert run.step == 24
    assert max(point["step"] for point in points if point["key"] == "train/loss") == 24

    middle = run.last_seq // 2
    resumed, resumed_states = asyncio.run(
        follow_run(f"{ws_url}&after={middle}", daphne_server, run.last_seq, timeout=30))

    assert [point["seq"] for point in resumed] == list(range(middle + 1, run.last_seq + 1))
    assert resumed == points[middle:]
    assert resumed_states[0]["status"] == "succeeded"
