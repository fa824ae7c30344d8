"""Who may open a run's websocket: browsers from an allowed origin with a session, scripts with a token."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from studio.asgi import application
from training.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def run(project, digits_dataset):
    return Run.objects.create(project=project, dataset=digits_dataset, config={"epochs": 1})


@database_sync_to_async
def _token(user) -> str:
    return Token.objects.create(user=user).key


async def _connect(path, headers):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


def test_script_without_origin_connects_with_token(run, owner):
    async_to_sync(_test_script_without_origin_connects_with_token)(run, owner)


async def _test_script_without_origin_connects_with_token(run, owner):
    key = await _token(owner)

    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/?token={key}", [(b"host", b"127.0.0.1")])

    assert connected is True
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "run.state"
    assert first["run"]["id"] == run.pk
    await communicator.disconnect()


def test_token_in_authorization_header_connects(run, viewer):
    async_to_sync(_test_token_in_authorization_header_connects)(run, viewer)


async def _test_token_in_authorization_header_connects(run, viewer):
    key = await _token(viewer)
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Token {key}".encode())]

    communicator, connected, _ = await _connect(f"/ws/runs/{run.pk}/", headers)

    assert connected is True
    await communicator.disconnect()


def test_foreign_origin_is_rejected(run, owner):
    async_to_sync(_test_foreign_origin_is_rejected)(run, owner)


async def _test_foreign_origin_is_rejected(run, owner):
    key = await _token(owner)
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://evil.example")]

    _, connected, _ = await _connect(f"/ws/runs/{run.pk}/?token={key}", headers)

    assert connected is False


def test_wrong_token_is_forbidden(run):
    async_to_sync(_test_wrong_token_is_forbidden)(run)


async def _test_wrong_token_is_forbidden(run):
    _, connected, code = await _connect(f"/ws/runs/{run.pk}/?token=not-a-token", [(b"host", b"127.0.0.1")])

    assert connected is False
    assert code == 4403


def test_outsider_token_is_forbidden(run, outsider):
    async_to_sync(_test_outsider_token_is_forbidden)(run, outsider)


async def _test_outsider_token_is_forbidden(run, outsider):
    key = await _token(outsider)

    _, connected, code = await _connect(f"/ws/runs/{run.pk}/?token={key}", [(b"host", b"127.0.0.1")])

    assert connected is False
    assert code == 4403
