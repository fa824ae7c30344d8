"""Study pages: the create form and its errors, the study page, its charts, stop, promote, and who may do what.

Every test that may create a study uses a transactional database: Optuna
writes through its own connection to the same SQLite file, and a test
transaction would hold the write lock. Without a worker (the in-memory
broker) runs stay queued; complete_trial finishes one as a worker would.
"""

import json

import optuna
import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from training.models import Run, RunStatus
from tuning import services
from tuning.models import Study, StudyState, TrialState

transactional = pytest.mark.django_db(transaction=True)

BASE = {"model": "mlp", "hidden_sizes": [32], "epochs": 3, "batch_size": 64}
SPACE = {
    "lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "hidden_sizes[0]": {"type": "int", "low": 16, "high": 64, "step": 16},
}


def rows_data(space: dict) -> dict:
    """POST data of the parameter rows (a Django formset with prefix "space") for a space dict."""
    data = {"space-TOTAL_FORMS": str(len(space)), "space-INITIAL_FORMS": "0", "space-MIN_NUM_FORMS": "0",
            "space-MAX_NUM_FORMS": "1000"}
    for index, (name, spec) in enumerate(space.items()):
        row = {"name": name, "type": spec["type"], "low": "", "high": "", "step": "", "choices": ""}
        for key in ("low", "high", "step"):
            if key in spec:
                row[key] = str(spec[key])
        if spec.get("log"):
            row["log"] = "on"
        if "choices" in spec:
            row["choices"] = ", ".join(str(choice) for choice in spec["choices"])
        data.update({f"space-{index}-{key}": value for key, value in row.items()})
    return data


def study_data(dataset, space=None, source="rows", objectives=(("val/accuracy", ""),), **overrides) -> dict:
    """POST data of the study form: a small MLP study of 4 trials, 2 in parallel."""
    space = SPACE if space is None else space
    data = {
        "dataset": dataset.pk, "name": "", "base_config": json.dumps(BASE), "space_source": source,
        "space_json": json.dumps(space) if source == "json" else "",
        "sampler": "tpe", "pruner": "median", "n_trials": "4", "parallel": "2", "timeout_seconds": "", "seed": "0",
    }
    for index in range(3):
        metric, direction = objectives[index] if index < len(objectives) else ("", "")
        data[f"objective_{index}_metric"] = metric
        data[f"objective_{index}_direction"] = direction
    data.update(rows_data(space) if source == "rows" else rows_data({}))
    data.update(overrides)
    return data


def create_url(project):
    return reverse("study-create", args=[project.pk])


def optuna_study_names() -> set[str]:
    """Names of the studies in Optuna's storage; its tables outlive the flush between transactional tests."""
    return set(optuna.study.get_all_study_names(storage=services.storage()))


def make_study(project, dataset, user, **options) -> Study:
    defaults = {"base_config": BASE, "space": SPACE, "sampler": "random", "pruner": "median", "n_trials": 4,
                "parallel": 2, "seed": 1}
    return services.create_study(project, dataset, name=options.pop("name", "sweep"), user=user,
                                 **{**defaults, **options})


def complete_trial(trial, accuracy: float, latency_ms: float | None = None, curve=()):
    """Finish a trial's run as a worker would: report its epochs to Optuna, store the summary, send run_finished."""
    if curve:
        optuna_study = services.load_optuna_study(trial.study)
        for epoch, value in enumerate(curve, start=1):
            optuna_study._storage.set_trial_intermediate_value(trial.optuna_trial_id, epoch, value)
    summary = {"val/accuracy": accuracy, "val/loss": 1 - accuracy}
    if latency_ms is not None:
        summary["model/latency_ms"] = latency_ms
    Run.objects.filter(pk=trial.run_id).update(status=RunStatus.SUCCEEDED, summary=summary,
                                               finished_at=timezone.now(), epoch=BASE["epochs"])
    services.on_run_finished(None, Run.objects.get(pk=trial.run_id))


def first_running_trial(study):
    return study.trials.filter(state=TrialState.RUNNING).order_by("number").first()


# ---- Who may create -----------------------------------------------------------------


@transactional
def test_viewer_gets_403_on_create(client, viewer, project, digits_dataset):
    client.force_login(viewer)

    assert client.get(create_url(project)).status_code == 403
    assert client.post(create_url(project), study_data(digits_dataset)).status_code == 403
    assert Study.objects.count() == 0


@transactional
def test_outsider_gets_404_on_create(client, outsider, project, digits_dataset):
    client.force_login(outsider)

    assert client.get(create_url(project)).status_code == 404
    assert client.post(create_url(project), study_data(digits_dataset)).status_code == 404
    assert Study.objects.count() == 0


def test_anonymous_create_goes_to_login(client, project):
    response = client.get(create_url(project))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# ---- The create page ------------------------------------------------------------------


def test_create_page_prefills_defaults(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.get(create_url(project))

    assert response.status_code == 200
    form = response.context["form"]
    base = json.loads(form.initial["base_config"])
    assert base["model"] == "cnn"
    assert base["hidden_sizes"] == [64]
    assert "task" not in base
    space = json.loads(form.initial["space_json"])
    assert list(space) == ["lr", "batch_size", "weight_decay", "hidden_sizes[0]", "dropout", "optimizer"]
    assert space["lr"] == {"type": "float", "low": 0.0001, "high": 0.1, "log": True}
    assert space["batch_size"] == {"type": "categorical", "choices": [32, 64, 128]}
    assert space["hidden_sizes[0]"] == {"type": "int", "low": 32, "high": 256, "step": 32}
    assert form.initial["objective_0_metric"] == "val/accuracy"
    page = response.content.decode()
    # One row per parameter of the default space, filled in.
    assert 'name="space-TOTAL_FORMS" value="6"' in page
    assert 'name="space-0-name" value="lr"' in page
    assert 'name="space-3-name" value="hidden_sizes[0]"' in page
    assert 'name="space-5-choices" value="adam, adamw, sgd"' in page
    assert '<option value="tpe" selected>' in page
    assert '<option value="median" selected>' in page
    info = response.context["dataset_info"][str(digits_dataset.pk)]
    assert info["metrics"] == ["val/accuracy", "val/loss", "model/parameters", "model/latency_ms"]


def test_create_page_suggests_search_space_validates(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.get(create_url(project))

    form = response.context["form"]
    services.validate_study(digits_dataset, base_config=json.loads(form.initial["base_config"]),
                            space=json.loads(form.initial["space_json"]))


def test_create_page_without_dataset_links_upload(client, owner, project):
    client.force_login(owner)

    response = client.get(create_url(project))

    page = response.content.decode()
    assert response.status_code == 200
    assert reverse("dataset-upload", args=[project.pk]) in page
    assert 'id="study-form"' not in page


# ---- Creating a study ---------------------------------------------------------------


@transactional
def test_owner_creates_study_from_rows(client, owner, project, digits_dataset):
    client.force_login(owner)
    names_before = optuna_study_names()

    response = client.post(create_url(project), study_data(digits_dataset, name="mlp sweep"))

    study = Study.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("study-detail", args=[study.pk])
    assert study.name == "mlp sweep"
    assert study.created_by == owner
    assert study.space == SPACE
    assert study.base_config["model"] == "mlp"
    assert study.base_config["epochs"] == 3
    assert study.objectives == [{"metric": "val/accuracy", "direction": "maximize"}]
    assert (study.sampler, study.pruner, study.n_trials, study.parallel, study.seed) == ("tpe", "median", 4, 2, 0)
    assert study.timeout_seconds is None
    assert study.state == StudyState.RUNNING
    # The first `parallel` trials started as queued runs.
    assert study.trials_started == 2
    assert Run.objects.filter(status=RunStatus.QUEUED).count() == 2
    assert optuna_study_names() == names_before | {study.optuna_name}


@transactional
def test_maintainer_creates_study_from_json(client, maintainer, project, digits_dataset):
    client.force_login(maintainer)
    space = {"dropout": {"type": "float", "low": 0.0, "high": 0.5},
             "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}}

    response = client.post(create_url(project), study_data(digits_dataset, space=space, source="json",
                                                           timeout_seconds="600", seed="7"))

    study = Study.objects.get()
    assert response.status_code == 302
    assert study.created_by == maintainer
    assert study.space == space
    assert study.timeout_seconds == 600
    assert study.seed == 7


@transactional
def test_multi_objective_study_from_form(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), study_data(
        digits_dataset, objectives=[("val/accuracy", "maximize"), ("model/latency_ms", "")],
        sampler="nsga2", pruner="none"))

    study = Study.objects.get()
    assert response.status_code == 302
    assert study.objectives == [{"metric": "val/accuracy", "direction": "maximize"},
                                {"metric": "model/latency_ms", "direction": "minimize"}]
    assert study.sampler == "nsga2"
    assert study.multi_objective


# ---- Bad input is shown next to its field, and nothing is stored -----------------------


def row_with(name: str, **changes) -> dict:
    return {**SPACE, name: changes}


BAD_ROWS = [
    pytest.param(row_with("lr", type="float", low=0.1, high=0.001), "lr",
                 "space.lr: the range is empty: low 0.1 is above high 0.001", id="empty-range"),
    pytest.param({**SPACE, "learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}, "learning_rate",
                 "space.learning_rate: unknown parameter; expected one of batch_size, device, dropout, "
                 "early_stopping_patience, epochs, gradient_checkpointing, lr, model, momentum, optimizer, "
                 "precision, schedule, seed, task, val_split, weight_decay, or an element of a list such as "
                 "hidden_sizes[0]", id="unknown-parameter"),
    pytest.param({**SPACE, "weight_decay": {"type": "float", "low": 0, "high": 0.01, "log": True}}, "weight_decay",
                 "space.weight_decay: a log scale needs low above 0, got 0.0", id="log-from-zero"),
    pytest.param(row_with("hidden_sizes[0]", type="int", low=16, high=60, step=16), "hidden_sizes[0]",
                 "space.hidden_sizes[0]: 'step' 16 does not divide the range 16 to 60", id="step"),
    pytest.param({**SPACE, "hidden_sizes[1]": {"type": "int", "low": 8, "high": 64}}, "hidden_sizes[1]",
                 "space.hidden_sizes[1]: index 1 is past the end of the base config's hidden_sizes, which has 1 "
                 "elements", id="index-past-end"),
    pytest.param({**SPACE, "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}}, "optimizer",
                 "space.optimizer: must be one of sgd, adam, adamw, got 'rmsprop'",
                 id="bad-choice"),
    pytest.param(row_with("lr", type="float", low="abc", high=0.1), "lr",
                 "space.lr: 'low' must be a number, got 'abc'", id="not-a-number"),
    pytest.param(row_with("dropout", type="float", low=0.1, high=0.1), "dropout",
                 "space.dropout: low and high are both 0.1; set a fixed value in the base config instead",
                 id="low-equals-high"),
    pytest.param(row_with("lr", type="float", high=0.1), "lr", "space.lr: 'low' is missing", id="missing-low"),
]


@transactional
@pytest.mark.parametrize(("space", "parameter", "message"), BAD_ROWS)
def test_bad_row_shown_next_to_it(client, owner, project, digits_dataset, space, parameter, message):
    client.force_login(owner)
    names_before = optuna_study_names()

    response = client.post(create_url(project), study_data(digits_dataset, space=space, name="keep me"))

    assert response.status_code == 200
    form = response.context["form"]
    index = list(space).index(parameter)
    assert form.row_errors == {index: [message]}
    page = response.content.decode()
    # The message sits in the error row right after the parameter's row, whose inputs keep what was typed.
    row_start = page.index(f'name="space-{index}-name" value="{escape(parameter)}"')
    errors_start = page.index("data-errors-of-row", row_start)
    assert page.index(f'<div class="field-error" role="alert">{escape(message)}</div>', row_start) > errors_start
    assert 'value="keep me"' in page
    assert Study.objects.count() == 0
    assert Run.objects.count() == 0
    assert optuna_study_names() == names_before


@transactional
def test_duplicate_row_names_rejected(client, owner, project, digits_dataset):
    client.force_login(owner)
    data = study_data(digits_dataset)
    data.update({"space-3-name": "lr", "space-3-type": "float", "space-3-low": "0.01", "space-3-high": "0.2",
                 "space-TOTAL_FORMS": "4"})

    response = client.post(create_url(project), data)

    assert response.context["form"].row_errors == {3: ["space.lr: the parameter is listed twice"]}
    assert Study.objects.count() == 0


@transactional
def test_all_rows_removed_says_space_empty(client, owner, project, digits_dataset):
    client.force_login(owner)
    data = study_data(digits_dataset)
    for index in range(len(SPACE)):
        data[f"space-{index}-DELETE"] = "on"
    names_before = optuna_study_names()

    response = client.post(create_url(project), data)

    form = response.context["form"]
    assert form.space_errors == ["space: is empty; add at least one parameter to search"]
    assert escape("space: is empty; add at least one parameter to search") in response.content.decode()
    assert Study.objects.count() == 0
    assert optuna_study_names() == names_before


@transactional
@pytest.mark.parametrize(("typed", "message"), [
    ('{"lr": {"type": "float", "low": 0.1,}}',
     "space: is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 37"),
    ("[1, 2]", "space: must be a JSON object that maps parameters to their ranges, got list"),
    ("", "space: is empty; add at least one parameter to search"),
    ('{"lr": {"type": "float", "low": 1, "high": 0.1}}', "space.lr: the range is empty: low 1.0 is above high 0.1"),
    ('{"momentum": {"type": "uniform", "low": 0, "high": 1}}',
     "space.momentum: 'type' must be one of float, int, categorical, got 'uniform'"),
])
def test_bad_space_json_shown_under_it(client, owner, project, digits_dataset, typed, message):
    client.force_login(owner)
    data = study_data(digits_dataset, source="json")
    data["space_json"] = typed
    names_before = optuna_study_names()

    response = client.post(create_url(project), data)

    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["space_json"] == [message]
    page = response.content.decode()
    # The JSON section stays open with the text as typed.
    assert '<details class="json-config" id="space-json" open>' in page
    assert escape(typed) in page
    assert Study.objects.count() == 0
    assert optuna_study_names() == names_before


@transactional
def test_bad_space_json_also_marks_its_row(client, owner, project, digits_dataset):
    client.force_login(owner)
    data = study_data(digits_dataset, source="json")
    data["space_json"] = json.dumps({"dropout": {"type": "float", "low": 0.0, "high": 0.4},
                                     "lr": {"type": "float", "low": 1, "high": 0.1}})

    response = client.post(create_url(project), data)

    form = response.context["form"]
    # The rows follow the submitted JSON, and the row of lr shows the message too.
    assert [row["name"].value() for row in form.rows.forms] == ["dropout", "lr"]
    assert form.row_errors == {1: ["space.lr: the range is empty: low 1.0 is above high 0.1"]}


@transactional
@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"objective_1_metric": "val/rmse", "pruner": "none"}, "objective_1_metric",
     "objectives[1]: unknown metric 'val/rmse' for a classification dataset; expected one of val/accuracy, "
     "val/loss, model/parameters, model/latency_ms"),
    ({"objective_1_metric": "model/latency_ms"}, "pruner", "pruner: pruning needs a single objective; choose none"),
    ({"objective_1_metric": "model/latency_ms", "pruner": "none", "sampler": "cmaes"}, "sampler",
     "sampler: cmaes optimises one objective; with several, use tpe, nsga2, gp, random or qmc"),
    ({"n_trials": "0"}, "n_trials", "n_trials: must be from 1 to 10000, got 0"),
    ({"parallel": "65"}, "parallel", "parallel: must be from 1 to 64, got 65"),
    ({"timeout_seconds": "0"}, "timeout_seconds", "timeout_seconds: must be from 1 to 2592000, got 0"),
    ({"base_config": '{"model": "mlp", "hidden_sizes": [32], "lr": -1}'}, "base_config",
     "lr: must lie in (0.0, 10.0], got -1.0"),
    ({"base_config": '{"model": "mlp",'}, "base_config",
     "config: is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 17"),
])
def test_bad_setting_shown_next_to_field(client, owner, project, digits_dataset, overrides, field, message):
    client.force_login(owner)
    names_before = optuna_study_names()

    response = client.post(create_url(project), study_data(digits_dataset, **overrides))

    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    page = response.content.decode()
    assert f'<div class="field-error" role="alert">{escape(message)}</div>' in page
    assert Study.objects.count() == 0
    assert optuna_study_names() == names_before


@transactional
def test_objective_error_points_at_its_row(client, owner, project, digits_dataset):
    """A skipped objective row does not shift the row that an objectives[i] error names."""
    client.force_login(owner)

    response = client.post(create_url(project), study_data(
        digits_dataset, objectives=[("val/accuracy", ""), ("", ""), ("val/r2", "")], pruner="none"))

    errors = response.context["form"].errors
    assert list(errors) == ["objective_2_metric"]
    assert errors["objective_2_metric"][0].startswith("objectives[1]: unknown metric 'val/r2'")


# ---- The study page ----------------------------------------------------------------


@pytest.fixture
def study(transactional_db, project, digits_dataset, owner):
    return make_study(project, digits_dataset, owner)


def test_study_page_shows_state_and_trials(client, owner, study):
    client.force_login(owner)

    response = client.get(reverse("study-detail", args=[study.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span id="study-state" class="badge status-running">Running</span>' in page
    assert '<dd id="study-trials">0/4</dd>' in page
    assert '<dd id="study-running">2</dd>' in page
    trials = list(study.trials.order_by("number"))
    assert len(trials) == 2
    for trial in trials:
        assert f'data-trial-number="{trial.number}" data-state="running" data-run-id="{trial.run_id}"' in page
        assert f'href="{reverse("run-detail", args=[trial.run_id])}">run {trial.run_id}</a>' in page
    assert '<th class="num mono">hidden_sizes[0]</th>' in page
    assert '<th class="num">val/accuracy</th>' in page
    assert reverse("study-stop", args=[study.pk]) in page
    assert '<button type="submit" class="primary" id="promote-button" disabled>' in page
    for key in ("history", "intermediate", "importances", "parallel", "slice", "contour"):
        assert f'id="chart-{key}"' in page
    assert 'id="chart-pareto"' not in page
    assert "vendor/plotly/plotly.min.js" in page
    live = response.context["live"]
    assert live["ws_path"] == f"/ws/studies/{study.pk}/"
    assert live["charts_url"] == reverse("study-charts", args=[study.pk])
    assert live["params"] == ["lr", "batch_size", "hidden_sizes[0]"]
    assert live["labels"]["trialStates"]["pruned"] == "Pruned"


def test_study_page_hides_buttons_from_viewer(client, viewer, study):
    client.force_login(viewer)

    response = client.get(reverse("study-detail", args=[study.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert reverse("study-stop", args=[study.pk]) not in page
    assert reverse("study-promote", args=[study.pk]) not in page


def test_study_page_marks_best_trial(client, owner, study):
    first, second = study.trials.order_by("number")
    complete_trial(first, 0.8)
    complete_trial(second, 0.9)
    client.force_login(owner)

    response = client.get(reverse("study-detail", args=[study.pk]))

    page = response.content.decode()
    study.refresh_from_db()
    assert study.best_trial_id == second.pk
    assert f'<tr data-trial-number="{second.number}" data-state="complete" data-run-id="{second.run_id}" ' \
           f'class="best">' in page
    assert '<dd id="study-best" title="0.9">0.9</dd>' in page
    assert f'<dd id="study-best-trial">{second.number}</dd>' in page
    assert '<dd id="study-trials">2/4</dd>' in page
    assert '<button type="submit" class="primary" id="promote-button">' in page


@pytest.mark.parametrize("name", ["study-detail", "study-charts", "study-row"])
def test_outsider_gets_404_on_study_pages(client, outsider, study, name):
    client.force_login(outsider)

    assert client.get(reverse(name, args=[study.pk])).status_code == 404


@pytest.mark.parametrize("name", ["study-stop", "study-promote"])
def test_outsider_gets_404_on_study_actions(client, outsider, study, name):
    client.force_login(outsider)

    assert client.post(reverse(name, args=[study.pk])).status_code == 404
    study.refresh_from_db()
    assert study.state == StudyState.RUNNING
    assert Run.objects.count() == 2


def test_missing_study_is_404(client, owner, db):
    client.force_login(owner)

    assert client.get(reverse("study-detail", args=[999999])).status_code == 404


# ---- Charts ------------------------------------------------------------------------


def charts_of(client, study, **query) -> dict:
    response = client.get(reverse("study-charts", args=[study.pk]), query)
    assert response.status_code == 200
    return {chart["key"]: chart for chart in response.json()["charts"]}


def test_charts_wait_for_complete_trials(client, viewer, study):
    client.force_login(viewer)

    charts = charts_of(client, study)

    assert list(charts) == ["history", "intermediate", "importances", "contour", "parallel", "slice"]
    assert charts["history"] == {"key": "history", "title": "Optimization history",
                                 "reason": "no trial has completed yet"}
    assert charts["intermediate"]["reason"] == "no trial has finished an epoch yet"
    assert charts["importances"]["reason"] == "importances need at least 2 complete trials"
    assert charts["contour"]["reason"] == "a contour needs at least 2 complete trials"
    assert all("figure" not in chart for chart in charts.values())


def test_charts_drawn_once_trials_complete(client, viewer, study):
    client.force_login(viewer)
    charts_of(client, study)
    first = first_running_trial(study)
    complete_trial(first, 0.7, curve=[0.4, 0.6, 0.7])

    one = charts_of(client, study)

    # The cache of the first request is keyed on the finished trials, so the new trial shows at once.
    history = one["history"]["figure"]
    assert [trace["name"] for trace in history["data"]] == ["val/accuracy", "Best value"]
    assert history["data"][0]["y"] == [0.7]
    assert history["layout"]["yaxis"]["title"]["text"] == "val/accuracy"
    assert "template" not in history["layout"]
    assert "title" not in history["layout"]
    intermediate = one["intermediate"]["figure"]
    assert intermediate["data"][0]["name"] == f"Trial {first.number}"
    assert intermediate["data"][0]["y"] == [0.4, 0.6, 0.7]
    assert one["importances"]["reason"] == "importances need at least 2 complete trials"
    assert "figure" in one["slice"]
    assert "figure" in one["parallel"]

    complete_trial(first_running_trial(study), 0.9, curve=[0.5, 0.8, 0.9])
    two = charts_of(client, study)

    assert two["history"]["figure"]["data"][0]["y"] == [0.7, 0.9]
    bars = two["importances"]["figure"]["data"][0]
    assert bars["type"] == "bar"
    assert sorted(bars["y"]) == ["batch_size", "hidden_sizes[0]", "lr"]
    contour = two["contour"]["figure"]
    assert any(trace["type"] == "contour" for trace in contour["data"])


def test_charts_mark_pruned_trials(client, viewer, study):
    client.force_login(viewer)
    pruned = first_running_trial(study)
    optuna_study = services.load_optuna_study(study)
    optuna_study._storage.set_trial_intermediate_value(pruned.optuna_trial_id, 1, 0.1)
    Run.objects.filter(pk=pruned.run_id).update(status=RunStatus.PRUNED, error="behind the other trials",
                                                finished_at=timezone.now())
    services.on_run_finished(None, Run.objects.get(pk=pruned.run_id))

    charts = charts_of(client, study)

    trace = charts["intermediate"]["figure"]["data"][0]
    assert trace["name"] == f"Trial {pruned.number} (pruned)"
    assert trace["line"]["dash"] == "dot"


def test_charts_reject_bad_objective(client, viewer, study):
    client.force_login(viewer)

    for value in ("1", "-1", "x"):
        response = client.get(reverse("study-charts", args=[study.pk]), {"objective": value})
        assert response.status_code == 400
        assert response.json() == {"errors": [{"field": "objective",
                                               "message": "objective must be an index from 0 to 0"}]}


@pytest.fixture
def pareto_study(transactional_db, project, digits_dataset, owner):
    return make_study(project, digits_dataset, owner, name="pareto", sampler="nsga2", pruner="none",
                      objectives=[{"metric": "val/accuracy"}, {"metric": "model/latency_ms"}], n_trials=3)


def test_pareto_study_charts(client, owner, pareto_study):
    client.force_login(owner)
    first, second = pareto_study.trials.order_by("number")
    complete_trial(first, 0.9, latency_ms=2.0)
    complete_trial(second, 0.8, latency_ms=1.0)
    complete_trial(first_running_trial(pareto_study), 0.7, latency_ms=3.0)

    response = client.get(reverse("study-charts", args=[pareto_study.pk]))
    payload = response.json()
    charts = {chart["key"]: chart for chart in payload["charts"]}

    # The third trial is slower and less accurate than the first, so it is off the front.
    assert payload["pareto"] == [{"number": first.number, "values": [0.9, 2.0]},
                                 {"number": second.number, "values": [0.8, 1.0]}]
    assert list(charts) == ["pareto", "history", "importances", "contour", "parallel", "slice"]
    pareto = charts["pareto"]["figure"]
    assert pareto["layout"]["xaxis"]["title"]["text"] == "val/accuracy"
    assert pareto["layout"]["yaxis"]["title"]["text"] == "model/latency_ms"
    assert charts["history"]["figure"]["layout"]["yaxis"]["title"]["text"] == "val/accuracy"

    by_latency = {chart["key"]: chart for chart in client.get(
        reverse("study-charts", args=[pareto_study.pk]), {"objective": 1}).json()["charts"]}

    assert by_latency["history"]["figure"]["layout"]["yaxis"]["title"]["text"] == "model/latency_ms"
    assert by_latency["history"]["figure"]["data"][0]["y"] == [2.0, 1.0, 3.0]


def test_pareto_study_page_offers_front(client, owner, pareto_study):
    first, second = pareto_study.trials.order_by("number")
    complete_trial(first, 0.9, latency_ms=2.0)
    complete_trial(second, 0.95, latency_ms=1.0)
    client.force_login(owner)

    response = client.get(reverse("study-detail", args=[pareto_study.pk]))

    page = response.content.decode()
    # The second trial beats the first on both objectives: only it is on the front.
    assert [trial.number for trial in response.context["promotable"]] == [second.number]
    assert f'<option value="{second.number}" selected>trial {second.number}: 0.95, 1</option>' in page
    assert 'id="chart-pareto"' in page
    assert 'id="chart-intermediate"' not in page
    assert 'id="chart-objective"' in page


# ---- Stop -------------------------------------------------------------------------


def test_stop_button_stops_study(client, owner, study):
    client.force_login(owner)

    response = client.post(reverse("study-stop", args=[study.pk]), follow=True)

    study.refresh_from_db()
    assert response.redirect_chain == [(reverse("study-detail", args=[study.pk]), 302)]
    assert study.state == StudyState.STOPPED
    assert set(study.trials.values_list("state", flat=True)) == {TrialState.FAILED}
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.CANCELLED}
    assert [str(m) for m in response.context["messages"]] == [
        "Study “sweep” is stopping: no new trial starts, and its running trials are cancelled."]
    assert reverse("study-stop", args=[study.pk]) not in response.content.decode()

    again = client.post(reverse("study-stop", args=[study.pk]), follow=True)

    assert [str(m) for m in again.context["messages"]] == ["Study “sweep” had already ended; nothing was stopped."]


def test_viewer_gets_403_on_stop(client, viewer, study):
    client.force_login(viewer)

    response = client.post(reverse("study-stop", args=[study.pk]))

    study.refresh_from_db()
    assert response.status_code == 403
    assert study.state == StudyState.RUNNING


def test_stop_needs_post(client, owner, study):
    client.force_login(owner)

    response = client.get(reverse("study-stop", args=[study.pk]))

    study.refresh_from_db()
    assert response.status_code == 405
    assert study.state == StudyState.RUNNING


# ---- Promote ---------------------------------------------------------------------


def test_promote_best_trial_opens_run(client, maintainer, study):
    first, second = study.trials.order_by("number")
    complete_trial(first, 0.95)
    complete_trial(second, 0.6)
    client.force_login(maintainer)

    response = client.post(reverse("study-promote", args=[study.pk]), {"epochs": "8"})

    run = Run.objects.order_by("-pk").first()
    first.refresh_from_db()
    assert response.status_code == 302
    assert response["Location"] == reverse("run-detail", args=[run.pk])
    assert run.name == f"sweep: trial {first.number}"
    assert run.created_by == maintainer
    assert run.config["epochs"] == 8
    for name in ("lr", "batch_size"):
        assert run.config[name] == first.params[name]
    assert run.config["hidden_sizes"] == [first.params["hidden_sizes[0]"]]
    assert not hasattr(run, "trial") or run.trial is None


def test_promote_keeps_trial_epochs_when_empty(client, owner, study):
    complete_trial(first_running_trial(study), 0.9)
    client.force_login(owner)

    response = client.post(reverse("study-promote", args=[study.pk]), {"epochs": ""}, follow=True)

    run = Run.objects.order_by("-pk").first()
    study.refresh_from_db()
    assert run.config["epochs"] == BASE["epochs"]
    assert [str(m) for m in response.context["messages"]][-1] == (
        f"Run “{run}” is queued with the parameters of trial {study.best_trial.number}.")


def test_promote_chosen_pareto_trial(client, owner, pareto_study):
    first, second = pareto_study.trials.order_by("number")
    complete_trial(first, 0.9, latency_ms=2.0)
    complete_trial(second, 0.8, latency_ms=1.0)
    client.force_login(owner)

    response = client.post(reverse("study-promote", args=[pareto_study.pk]), {"trial": second.number})

    run = Run.objects.order_by("-pk").first()
    second.refresh_from_db()
    assert response.status_code == 302
    assert response["Location"] == reverse("run-detail", args=[run.pk])
    assert run.config["lr"] == second.params["lr"]


@pytest.mark.parametrize(("data", "field", "message"), [
    ({}, "trial", "trial: no trial of this study has completed, so none can be promoted"),
    ({"trial": "0"}, "trial", "trial: trial 0 is Running, but only a complete trial can be promoted"),
    ({"trial": "42"}, "trial", "trial: this study has no trial 42"),
])
def test_promote_bad_trial_rejected(client, owner, study, data, field, message):
    client.force_login(owner)

    response = client.post(reverse("study-promote", args=[study.pk]), data)

    assert response.status_code == 200
    assert response.context["promote_form"].errors[field] == [message]
    assert f'<div class="field-error" role="alert">{escape(message)}</div>' in response.content.decode()
    assert Run.objects.count() == 2


def test_promote_bad_epochs_rejected(client, owner, study):
    complete_trial(first_running_trial(study), 0.9)
    client.force_login(owner)
    runs_before = Run.objects.count()

    response = client.post(reverse("study-promote", args=[study.pk]), {"epochs": "0"})

    assert response.status_code == 200
    assert response.context["promote_form"].errors["epochs"] == ["epochs: must be from 1 to 10000, got 0"]
    assert 'name="epochs" id="promote-epochs" min="1" value="0"' in response.content.decode()
    assert Run.objects.count() == runs_before


def test_viewer_gets_403_on_promote(client, viewer, study):
    complete_trial(first_running_trial(study), 0.9)
    client.force_login(viewer)
    runs_before = Run.objects.count()

    response = client.post(reverse("study-promote", args=[study.pk]))

    assert response.status_code == 403
    assert Run.objects.count() == runs_before


# ---- The project page ---------------------------------------------------------------


def test_project_page_lists_studies(client, owner, study, project):
    complete_trial(first_running_trial(study), 0.912345)
    client.force_login(owner)

    response = client.get(reverse("project-detail", args=[project.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert f'<tr data-study-id="{study.pk}" data-state="running" data-metric="val/accuracy">' in page
    assert f'<a href="{reverse("study-detail", args=[study.pk])}">sweep</a>' in page
    assert 'title="val/accuracy = 0.912345">0.9123 <span class="muted">val/accuracy</span>' in page
    assert '<span class="muted" data-field="trials">1/4</span>' in page
    assert '<div style="width: 25%"></div>' in page
    assert f'href="{reverse("study-create", args=[project.pk])}"' in page
    assert f'data-rows-url="{reverse("project-study-rows", args=[project.pk])}"' in page
    # The studies come before the runs, which include the trials' runs.
    assert page.index('id="project-studies"') < page.index('id="project-runs"')


def test_project_page_hides_new_study_from_viewer(client, viewer, project):
    client.force_login(viewer)

    response = client.get(reverse("project-detail", args=[project.pk]))

    page = response.content.decode()
    assert reverse("study-create", args=[project.pk]) not in page
    assert "No studies yet." in page


def test_study_row_endpoint(client, viewer, study):
    client.force_login(viewer)

    response = client.get(reverse("study-row", args=[study.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith(f'<tr data-study-id="{study.pk}" data-state="running"')


def test_project_study_rows_endpoint(client, viewer, outsider, study, project):
    client.force_login(viewer)
    response = client.get(reverse("project-study-rows", args=[project.pk]))
    assert response.status_code == 200
    assert f'data-study-id="{study.pk}"' in response.content.decode()

    client.force_login(outsider)
    assert client.get(reverse("project-study-rows", args=[project.pk])).status_code == 404
