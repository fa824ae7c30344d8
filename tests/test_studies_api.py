"""The studies API, with real Optuna storage in the test database.

The test settings use Celery's in-memory broker, so trial runs stay queued;
a test finishes a trial as a worker would, by storing the run's outcome and
sending run_finished. Every test here is transactional: Optuna writes
through its own connection, which a test's open transaction would block.
"""

import pytest
from django.test import Client

from tests.test_api_runs import client_for, errors, make_dataset
from training import services as run_services
from training.models import Run, RunStatus
from tuning.models import Study, StudyState, TrialState
from tuning.services import load_optuna_study, pareto_trial_numbers

pytestmark = pytest.mark.django_db(transaction=True)

STUDIES = "/api/v1/studies/"
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "hidden_sizes[0]": {"type": "int", "low": 16, "high": 128, "step": 16},
}


@pytest.fixture
def digits(project):
    return make_dataset(project, "digits")


def payload(project, dataset, **extra):
    return {"project": project.pk, "dataset": dataset.pk, "name": "lr search",
            "base_config": {"model": "mlp", "hidden_sizes": [64], "epochs": 3}, "space": SPACE,
            "n_trials": 4, "parallel": 2, **extra}


def start(client, project, dataset, **extra):
    response = client.post(STUDIES, payload(project, dataset, **extra), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def finish_run(run: Run, status=RunStatus.SUCCEEDED, **fields):
    """Store a trial run's outcome as the worker would and tell the studio it finished."""
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    assert run_services.finish_run(run.pk, status, **fields)


def test_start_study_queues_parallel_trials(project, digits, owner):
    body = start(client_for(owner), project, digits)

    study = Study.objects.get(pk=body["id"])
    assert body["state"] == "running"
    assert body["trials_started"] == 2
    assert body["url"].endswith(f"/studies/{study.pk}/")
    assert body["objectives"] == [{"metric": "val/accuracy", "direction": "maximize"}]
    trials = list(study.trials.select_related("run").order_by("number"))
    assert [t.number for t in trials] == [0, 1]
    for trial in trials:
        assert trial.run.status == RunStatus.QUEUED
        assert trial.run.config["lr"] == trial.params["lr"]
        assert trial.run.config["hidden_sizes"] == [trial.params["hidden_sizes[0]"]]
        assert 1e-4 <= trial.params["lr"] <= 0.1
        assert trial.params["batch_size"] in (32, 64, 128)
        assert trial.run.mlflow_tags["studio.trial_number"] == str(trial.number)


def test_finished_trials_start_the_next_and_the_study_completes(project, digits, owner):
    client = client_for(owner)
    body = start(client, project, digits, pruner="none")
    study = Study.objects.get(pk=body["id"])

    outcomes = [0.81, 0.93, None, 0.88]
    for number, accuracy in enumerate(outcomes):
        trial = study.trials.get(number=number)
        if accuracy is None:
            finish_run(trial.run, RunStatus.FAILED, diverged=True, error="diverged: train/loss became nan")
        else:
            finish_run(trial.run, summary={"val/accuracy": accuracy, "val/loss": 0.3})
    study.refresh_from_db()

    assert study.state == StudyState.FINISHED
    assert study.trials_started == study.trials_finished == 4
    assert study.best_values == [0.93]
    assert study.best_trial.number == 1
    trials = client.get(f"{STUDIES}{study.pk}/trials/").json()
    assert [t["state"] for t in trials] == ["complete", "complete", "failed", "complete"]
    assert trials[2]["reason"] == "diverged: train/loss became nan"
    assert trials[1]["value"] == 0.93
    assert client.get(f"{STUDIES}{study.pk}/trials/", {"state": "failed"}).json()[0]["number"] == 2
    assert client.get(f"{STUDIES}{study.pk}/trials/1/").json()["values"] == [0.93]
    assert client.get(f"{STUDIES}{study.pk}/trials/9/").status_code == 404

    optuna_trials = sorted(load_optuna_study(study).trials, key=lambda t: t.number)
    assert [t.state.name for t in optuna_trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert optuna_trials[2].user_attrs["studio_reason"] == "diverged: train/loss became nan"


def test_nan_objective_fails_the_trial_and_the_study_goes_on(project, digits, owner):
    study = Study.objects.get(pk=start(client_for(owner), project, digits, n_trials=3, parallel=1)["id"])

    finish_run(study.trials.get(number=0).run, summary={"val/loss": 0.3})
    study.refresh_from_db()

    first = study.trials.get(number=0)
    assert first.state == TrialState.FAILED
    assert first.reason == "objective value None is not a finite number"
    assert study.state == StudyState.RUNNING
    assert study.trials.count() == 2


def test_promote_best_trial(project, digits, owner):
    client = client_for(owner)
    study = Study.objects.get(pk=start(client, project, digits, pruner="none", n_trials=2)["id"])
    refused = client.post(f"{STUDIES}{study.pk}/promote/", {}, format="json")
    assert refused.status_code == 400
    assert errors(refused)[0]["field"] == "trial"

    finish_run(study.trials.get(number=0).run, summary={"val/accuracy": 0.7})
    finish_run(study.trials.get(number=1).run, summary={"val/accuracy": 0.9})
    best = study.trials.get(number=1)

    response = client.post(f"{STUDIES}{study.pk}/promote/", {"epochs": 12}, format="json")

    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert run.config["lr"] == best.params["lr"]
    assert run.config["batch_size"] == best.params["batch_size"]
    assert run.config["hidden_sizes"] == [best.params["hidden_sizes[0]"]]
    assert run.config["epochs"] == 12
    assert run.status == RunStatus.QUEUED
    assert not Run.objects.filter(pk=run.pk, trial__isnull=False).exists()

    chosen = client.post(f"{STUDIES}{study.pk}/promote/", {"trial": 0}, format="json")
    assert Run.objects.get(pk=chosen.json()["id"]).config["lr"] == study.trials.get(number=0).params["lr"]


def test_stop_cancels_queued_trials(project, digits, owner):
    client = client_for(owner)
    study_id = start(client, project, digits)["id"]

    response = client.post(f"{STUDIES}{study_id}/stop/")

    assert response.status_code == 200
    assert response.json()["state"] == "stopped"
    study = Study.objects.get(pk=study_id)
    assert {t.state for t in study.trials.all()} == {TrialState.FAILED}
    assert {t.run.status for t in study.trials.select_related("run")} == {RunStatus.CANCELLED}
    again = client.post(f"{STUDIES}{study_id}/stop/")
    assert again.status_code == 409
    assert errors(again)[0]["code"] == "already_finished"


@pytest.mark.parametrize("space, field, message", [
    ({"lr": {"type": "float", "low": 0.1, "high": 0.001}}, "space.lr",
     "the range is empty: low 0.1 is above high 0.001"),
    ({"lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "space.lr",
     "a log scale needs low above 0, got 0.0"),
    ({"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}, "space.learning_rate",
     "unknown parameter; expected one of"),
    ({"batch_size": {"type": "float", "low": 8, "high": 64}}, "space.batch_size",
     "takes integers; use type int or categorical"),
    ({"optimizer": {"type": "categorical", "choices": ["adam", "lion"]}}, "space.optimizer",
     "must be one of sgd, adam, adamw, got 'lion'"),
    ({"hidden_sizes[3]": {"type": "int", "low": 8, "high": 64}}, "space.hidden_sizes[3]",
     "index 3 is past the end of the base config's hidden_sizes, which has 1 elements"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.3}}, "space.dropout",
     "'step' 0.3 does not divide the range 0.0 to 0.5"),
    ({"lr": {"type": "float", "low": 0.1, "high": 0.1}}, "space.lr",
     "low and high are both 0.1; set a fixed value in the base config instead"),
    ({}, "space", "is empty; add at least one parameter to search"),
])
def test_bad_search_space_names_parameter(project, digits, owner, space, field, message):
    response = client_for(owner).post(STUDIES, payload(project, digits, space=space), format="json")

    assert response.status_code == 400
    [error] = errors(response)
    assert error["field"] == field
    assert message in error["message"]
    assert not Study.objects.exists()
    assert not Run.objects.exists()


@pytest.mark.parametrize("extra, field, message", [
    ({"objectives": [{"metric": "val/rmse"}]}, "objectives[0]", "unknown metric 'val/rmse' for a classification"),
    ({"objectives": [{"metric": "val/accuracy"}, {"metric": "model/latency_ms"}], "sampler": "cmaes",
      "pruner": "none"}, "sampler", "cmaes optimises one objective"),
    ({"objectives": [{"metric": "val/accuracy"}, {"metric": "model/latency_ms"}]}, "pruner",
     "pruning needs a single objective"),
    ({"objectives": [{"metric": "model/parameters"}]}, "pruner", "model/parameters has no per-epoch values"),
    ({"base_config": {"epochs": 0}}, "base_config.epochs", "must be from 1 to 10000, got 0"),
    ({"sampler": "grid"}, "sampler", "\"grid\" is not a valid choice."),
])
def test_bad_study_settings_name_the_field(project, digits, owner, extra, field, message):
    response = client_for(owner).post(STUDIES, payload(project, digits, **extra), format="json")

    assert response.status_code == 400
    assert errors(response)[0]["field"] == field
    assert message in errors(response)[0]["message"]
    assert not Study.objects.exists()


def test_multi_objective_study(project, digits, owner):
    objectives = [{"metric": "val/accuracy"}, {"metric": "model/latency_ms"}]
    body = start(client_for(owner), project, digits, objectives=objectives, sampler="nsga2", pruner="none",
                 n_trials=3, parallel=3)
    study = Study.objects.get(pk=body["id"])
    assert body["objectives"] == [{"metric": "val/accuracy", "direction": "maximize"},
                                  {"metric": "model/latency_ms", "direction": "minimize"}]

    for number, (accuracy, latency) in enumerate([(0.9, 0.5), (0.95, 0.9), (0.85, 0.7)]):
        finish_run(study.trials.get(number=number).run,
                   summary={"val/accuracy": accuracy, "model/latency_ms": latency})

    study.refresh_from_db()
    assert study.state == StudyState.FINISHED
    assert sorted(pareto_trial_numbers(study)) == [0, 1]
    assert sorted(t.number for t in load_optuna_study(study).best_trials) == [0, 1]


def test_who_may_do_what(project, digits, owner, viewer, outsider):
    study_id = start(client_for(owner), project, digits)["id"]

    viewer_client = client_for(viewer)
    assert viewer_client.get(f"{STUDIES}{study_id}/").status_code == 200
    assert viewer_client.post(STUDIES, payload(project, digits), format="json").status_code == 403
    assert viewer_client.post(f"{STUDIES}{study_id}/stop/").status_code == 403
    assert viewer_client.post(f"{STUDIES}{study_id}/promote/", {}, format="json").status_code == 403

    outsider_client = client_for(outsider)
    assert outsider_client.get(f"{STUDIES}{study_id}/").status_code == 404
    assert outsider_client.get(STUDIES).json()["results"] == []
    assert outsider_client.post(f"{STUDIES}{study_id}/stop/").status_code == 404
    assert Client().get(STUDIES).status_code == 403
    assert Study.objects.get(pk=study_id).state == StudyState.RUNNING


def test_list_filters(project, digits, owner):
    client = client_for(owner)
    first = start(client, project, digits)["id"]
    second = start(client, project, digits)["id"]
    client.post(f"{STUDIES}{first}/stop/")

    listed = client.get(STUDIES, {"project": project.pk}).json()["results"]
    assert [row["id"] for row in listed] == [second, first]
    stopped = client.get(STUDIES, {"state": "stopped"}).json()["results"]
    assert [row["id"] for row in stopped] == [first]
    assert errors(client.get(STUDIES, {"state": "sleeping"}))[0]["field"] == "state"


def test_pareto_trials_in_study(project, digits, owner):
    client = client_for(owner)
    objectives = [{"metric": "val/accuracy"}, {"metric": "model/parameters"}]
    study = Study.objects.get(pk=start(client, project, digits, objectives=objectives, sampler="tpe",
                                       pruner="none", n_trials=3, parallel=3)["id"])
    for number, (accuracy, size) in enumerate([(0.9, 5000), (0.8, 9000), (0.95, 20000)]):
        finish_run(study.trials.get(number=number).run,
                   summary={"val/accuracy": accuracy, "model/parameters": size})

    body = client.get(f"{STUDIES}{study.pk}/").json()

    assert body["pareto_trials"] == [0, 2]
    assert body["best_trial_number"] == 2
