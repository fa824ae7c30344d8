"""`studio demo` against a real `studio up`: upload digits, train a CNN, check the result."""

import re
import signal
import time

import pytest
import requests

from tests.conftest import free_port
from tests.studio_process import run_studio, spawn_studio, studio_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A studio without the MLflow UI (runs still log to MLflow's store), shared by this module's tests."""
    with studio_up(tmp_path_factory.mktemp("demo") / "home", free_port(), "--no-mlflow") as running:
        yield running


def test_demo_trains_digits(studio):
    result = run_studio(["demo", "--url", studio.url, "--timeout", "300"], studio.home, timeout=360)

    assert result.returncode == 0, result.stdout + result.stderr + studio.log[-3000:]
    output = result.stdout
    assert re.search(r"Uploaded dataset 'digits-[\d-]+-[0-9a-f]{4}': 1797 images of shape \[8, 8\], 10 classes",
                     output)
    assert re.search(r"  running: epoch \d+/10, step \d+/230, loss \d+\.\d{4}", output)
    run_line = re.search(rf"Run (\d+) succeeded: {re.escape(studio.url)}/runs/(\d+)/", output)
    assert run_line
    assert run_line.group(1) == run_line.group(2)
    accuracy = float(re.search(r"  val/accuracy: (\d\.\d+)", output).group(1))
    assert accuracy >= 0.95
    assert re.search(r"  MLflow run id: [0-9a-f]{32}", output)
    assert f"Demo passed: val/accuracy {accuracy:.4f} >= 0.95" in output


def test_demo_with_explicit_token(studio):
    from_token = run_studio(["token", "admin"], studio.home)
    token = from_token.stdout.strip()

    result = run_studio(["demo", "--url", studio.url, "--token", token, "--timeout", "300"], studio.home,
                        timeout=360)

    assert from_token.returncode == 0, from_token.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    uploaded = re.search(r"Uploaded dataset '([^']+)'", result.stdout).group(1)
    headers = {"Authorization": f"Token {token}"}
    project = requests.get(f"{studio.url}/api/v1/projects/", params={"name": "demo"}, headers=headers,
                           timeout=10).json()["results"][0]
    datasets = requests.get(f"{studio.url}/api/v1/datasets/", params={"project": project["id"]}, headers=headers,
                            timeout=10).json()["results"]
    assert [d["name"] for d in datasets].count(uploaded) == 1


def test_demo_with_wrong_token(studio):
    result = run_studio(["demo", "--url", studio.url, "--token", "0" * 40], studio.home)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # DRF returns 403, not 401, because session authentication comes first in the settings.
    assert result.stderr.strip() == ("studio: GET /api/v1/projects/ failed with HTTP 403: Invalid token. "
                                     "(check --token; `studio token USERNAME` prints one)")


def test_demo_on_separate_web_and_worker(tmp_path, redis_url):
    """The scale-out commands: `studio web` and `studio worker` join through REDIS_URL and the database."""
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    init = run_studio(["init"], home)
    web = spawn_studio(["web", "--port", str(port)], home, tmp_path / "web.log", REDIS_URL=redis_url)
    worker = spawn_studio(["worker", "--queues", "cpu", "--beat"], home, tmp_path / "worker.log", REDIS_URL=redis_url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and web.poll() is None:
            try:
                requests.get(f"{url}/accounts/login/", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)

        result = run_studio(["demo", "--url", url, "--timeout", "300"], home, timeout=360)
    finally:
        for process in (web, worker):
            process.send_signal(signal.SIGTERM)
        web_code = web.wait(timeout=30)
        worker_code = worker.wait(timeout=30)

    logs = (tmp_path / "web.log").read_text() + (tmp_path / "worker.log").read_text()
    assert init.returncode == 0, init.stderr
    assert result.returncode == 0, result.stdout + result.stderr + logs[-3000:]
    assert "Demo passed: val/accuracy" in result.stdout
    assert f"Serving the studio at {url}/" in logs
    assert "Task training.tasks.train_run" in logs
    assert web_code == 0
    assert worker_code == 0
