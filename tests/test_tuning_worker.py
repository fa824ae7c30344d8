"""Studies whose trials a real Celery worker trains, with real Optuna storage in the test database."""

import asyncio
import json
import time
from urllib.parse import urlparse

import optuna
import pytest

from tests.conftest import wait_until
from tests.test_live_stream import token_for
from training.models import Run, RunStatus
from tuning import services
from tuning.engine import search
from tuning.models import Study, StudyState, TrialState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# With SGD on this MLP, lr 10 diverges in the first epoch, 0.3 learns digits well and 1e-5 learns nothing.
LR_OUTCOME = {10.0: TrialState.FAILED, 0.3: TrialState.COMPLETE, 1e-5: TrialState.PRUNED}
BASE = {"model": "mlp", "hidden_sizes": [256, 256], "optimizer": "sgd", "epochs": 4, "batch_size": 64}


def _wait_finished(study_id, timeout):
    def finished():
        study = Study.objects.get(pk=study_id)
        return study if not study.is_active else None

    return wait_until(finished, timeout, f"study {study_id} to finish", interval=0.5)


def _add_mediocre_trials(study, count, value):
    """Give the pruner finished trials to compare with: 0 after epoch 1, then `value`.

    No trial is pruned after its first epoch, whatever the pruner's warm-up;
    from the second on, a trial below `value` is.
    """
    optuna_study = services.load_optuna_study(study)
    curve = {epoch: value if epoch > 1 else 0.0 for epoch in range(1, BASE["epochs"] + 1)}
    for _ in range(count):
        optuna_study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=value, params={}, distributions={},
            intermediate_values=curve))


async def _follow_study(ws_url, origin, timeout):
    from websockets.asyncio.client import connect

    messages = []
    deadline = time.monotonic() + timeout
    async with connect(ws_url, origin=origin, open_timeout=10) as socket:
        while time.monotonic() < deadline:
            try:
                message = json.loads(await asyncio.wait_for(socket.recv(), deadline - time.monotonic()))
            except TimeoutError:
                break
            messages.append(message)
            if message["type"] == "study.state" and message["study"]["state"] == "finished":
                break
    return messages


def test_study_trials_complete_prune_and_fail(start_worker, daphne_server, project, digits_dataset, owner):
    study = services.create_study(
        project, digits_dataset, name="lr sweep", user=owner, base_config=BASE,
        space={"lr": {"type": "categorical", "choices": list(LR_OUTCOME)}},
        sampler="random", pruner="median", n_trials=7, parallel=2, seed=4)
    # Nothing trains yet: the first two trials wait in the queue.
    assert study.trials_started == 2
    assert study.trials.count() == 2
    _add_mediocre_trials(study, search.MEDIAN_STARTUP_TRIALS + 1, 0.5)

    token = token_for(owner)
    ws_url = f"ws://{urlparse(daphne_server).netloc}/ws/studies/{study.pk}/?token={token}"
    start_worker()
    messages = asyncio.run(_follow_study(ws_url, daphne_server, timeout=300))

    study = _wait_finished(study.pk, 60)
    trials = list(study.trials.select_related("run").order_by("number"))
    assert study.state == StudyState.FINISHED, study.error
    assert study.trials_started == study.trials_finished == len(trials) == 7
    expected = [LR_OUTCOME[trial.params["lr"]] for trial in trials]
    assert [trial.state for trial in trials] == expected
    assert set(expected) == set(LR_OUTCOME.values()), "seed 4 samples every lr"

    for trial in trials:
        if trial.state == TrialState.FAILED:
            assert trial.run.status == RunStatus.FAILED
            assert trial.run.diverged
            assert trial.reason.startswith("diverged: train/loss became")
        elif trial.state == TrialState.PRUNED:
            assert trial.run.status == RunStatus.PRUNED
            assert trial.run.epoch < BASE["epochs"]
            assert "behind the other trials" in trial.reason
        else:
            assert trial.run.status == RunStatus.SUCCEEDED
            assert trial.values == [trial.run.summary["val/accuracy"]]
            assert trial.values[0] > 0.5

    # Optuna's storage agrees with the studio's rows.
    optuna_trials = {t.number: t for t in services.load_optuna_study(study).trials}
    mapping = {TrialState.COMPLETE: "COMPLETE", TrialState.PRUNED: "PRUNED", TrialState.FAILED: "FAIL"}
    for trial in trials:
        assert optuna_trials[trial.number].state.name == mapping[trial.state]
        assert optuna_trials[trial.number].params == trial.params
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.values[0])
    assert study.best_trial_id == best.pk
    assert study.best_values == best.values

    # Each trial's MLflow run nests under the study's.
    from django.conf import settings
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    assert client.get_run(study.mlflow_run_id).info.status == "FINISHED"
    child = client.get_run(best.run.mlflow_run_id)
    assert child.data.tags["mlflow.parentRunId"] == study.mlflow_run_id
    assert child.data.tags["studio.trial_number"] == str(best.number)

    # The socket sent a snapshot, then each trial's outcome and the study's end.
    final_states = {}
    for message in messages:
        if message["type"] == "trial.state":
            final_states[message["trial"]["number"]] = message["trial"]["state"]
    assert final_states == {trial.number: trial.state for trial in trials}
    assert messages[0]["type"] == "study.state"
    assert messages[-1]["study"]["state"] == "finished"
    assert messages[-1]["study"]["trials_finished"] == 7
    assert any(m["type"] == "run.state" and m["run"]["status"] == "running" for m in messages)

    promoted = services.promote(study, epochs=2, user=owner)
    assert promoted.config["lr"] == best.params["lr"]
    assert promoted.config["epochs"] == 2
    assert promoted.config["hidden_sizes"] == BASE["hidden_sizes"]
    assert not hasattr(promoted, "trial") or Run.objects.get(pk=promoted.pk).status == RunStatus.QUEUED


def test_stop_cancels_running_trials(celery_worker_process, project, digits_dataset, owner):
    study = services.create_study(
        project, digits_dataset, name="long", user=owner,
        base_config={**BASE, "epochs": 500, "batch_size": 8, "optimizer": "adam", "lr": 0.001},
        space={"hidden_sizes[0]": {"type": "int", "low": 16, "high": 64}},
        sampler="tpe", pruner="none", n_trials=10, parallel=2)
    first = study.trials.order_by("number").first()
    wait_until(lambda: Run.objects.get(pk=first.run_id).step >= 5, 120, "the first trial to train")

    assert services.stop_study(study)

    study = _wait_finished(study.pk, 60)
    assert study.state == StudyState.STOPPED
    trials = list(study.trials.select_related("run"))
    assert len(trials) == 2 == study.trials_started == study.trials_finished
    assert {t.state for t in trials} == {TrialState.FAILED}
    assert {t.reason for t in trials} == {"the study was stopped"}
    assert {t.run.status for t in trials} == {RunStatus.CANCELLED}
    assert not services.stop_study(study)
    states = {t.state.name for t in services.load_optuna_study(study).trials}
    assert states == {"FAIL"}
