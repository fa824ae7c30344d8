"""`studio demo` against a real `studio up`: upload digits, train a CNN, check the result."""

import re

import pytest
import requests

from tests.conftest import free_port
from tests.studio_process import run_studio, studio_up

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
