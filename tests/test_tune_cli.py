"""`studio tune` against a real `studio up`: start a study, follow it, promote the best trial."""

import json
import re

import pytest

from tests.conftest import free_port
from tests.studio_process import run_studio, studio_up

pytestmark = pytest.mark.integration

SPACE = {"lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True},
         "hidden_sizes[0]": {"type": "int", "low": 16, "high": 64, "step": 16}}
CONFIG = {"model": "mlp", "hidden_sizes": [32], "epochs": 2}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with studio_up(tmp_path_factory.mktemp("tune") / "home", free_port(), "--no-mlflow") as running:
        yield running


def test_tune_runs_a_study_and_promotes_the_best_trial(studio, tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))

    result = run_studio(["tune", "--url", studio.url, "--dataset", "digits", "--project", "demo",
                         "--space", str(space_file), "--config", json.dumps(CONFIG), "--trials", "4",
                         "--parallel", "2", "--sampler", "random", "--pruner", "none", "--promote",
                         "--promote-epochs", "3", "--timeout", "300"], studio.home, timeout=360)

    assert result.returncode == 0, result.stdout + result.stderr + studio.log[-3000:]
    output = result.stdout
    started = re.search(rf"Started study (\d+) \(random, 4 trials, 2 at once\) on digits: "
                        rf"{re.escape(studio.url)}/studies/(\d+)/", output)
    assert started and started.group(1) == started.group(2), output
    assert re.search(r"\[#{24}\] 4/4 trials, 0 running, best val/accuracy 0\.\d+ \(trial \d\)", output)
    assert f"Study {started.group(1)} finished: 4 complete" in output
    best = re.search(r"  best trial (\d): val/accuracy (0\.\d+)", output)
    assert best and float(best.group(2)) > 0.5
    assert re.search(r"    lr = 0\.\d+", output)
    assert re.search(r"    hidden_sizes\[0\] = (16|32|48|64)\n", output)
    assert re.search(rf"Promoted trial {best.group(1)} to run \d+: {re.escape(studio.url)}/runs/\d+/", output)


@pytest.mark.parametrize("args, message", [
    (["--space", "missing.json"], "studio: --space missing.json: no such file"),
    (["--space", '{"lr": '], "studio: --space: the inline JSON, line 1, column 8: Expecting value"),
    (["--space", '{"lr": {"type": "float", "low": 1, "high": 0.1}}'],
     "studio: POST /api/v1/studies/ failed with HTTP 400: space.lr: the range is empty: "
     "low 1.0 is above high 0.1"),
    (["--space", json.dumps(SPACE), "--dataset", "no-such-data"],
     "studio: no dataset named 'no-such-data' is visible to this token"),
    (["--space", json.dumps(SPACE), "--objective", "val/accuracy:upward"],
     "studio: POST /api/v1/studies/ failed with HTTP 400: objectives[0].direction: \"upward\" is not a valid "
     "choice."),
])
def test_tune_bad_input_names_it(studio, args, message):
    argv = ["tune", "--url", studio.url, "--dataset", "digits", "--no-wait", *args]
    # A later --dataset overrides the first, as argparse does.
    result = run_studio(argv, studio.home)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(message), result.stderr


def test_tune_space_file_error_names_line(studio, tmp_path):
    space_file = tmp_path / "space.json"
    space_file.write_text('{\n  "lr": {"type": "float",\n  "low": 0.001 "high": 0.1}\n}\n')

    result = run_studio(["tune", "--url", studio.url, "--dataset", "digits", "--space", str(space_file)],
                        studio.home)

    assert result.returncode == 1
    assert result.stderr.strip() == (f"studio: --space: {space_file}, line 3, column 16: "
                                     "Expecting ',' delimiter")
