"""The runs API: starting, listing, reading and cancelling runs, and paging through metrics.

The test settings use Celery's in-memory broker, so a created run is queued
to no real worker.
"""

import json
import math

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects.engine.datasets import inspect, write_builtin_npz
from projects.models import Dataset, Project
from training.models import Metric, Run, RunStatus
from training.services import validate_run_config

RUNS = "/api/v1/runs/"
PASSWORD = "secret-pass-123"


def make_dataset(project, builtin: str, name: str | None = None) -> Dataset:
    """Store a scikit-learn data set as NPZ under STUDIO_HOME and its row, summary filled in by inspect()."""
    from django.conf import settings

    folder = settings.STUDIO_HOME / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{builtin}.npz"
    if not path.exists():
        write_builtin_npz(builtin, path)
    summary = inspect(path, "npz", path.name)
    return Dataset.objects.create(
        project=project, name=name or builtin, format="npz", task=summary.task, sha256="0" * 64,
        file_path=str(path.relative_to(settings.STUDIO_HOME)), size_bytes=path.stat().st_size,
        num_rows=summary.num_rows, num_features=summary.num_features, input_shape=summary.input_shape,
        num_classes=summary.num_classes, class_names=summary.class_names, class_counts=summary.class_counts,
        builtin=True,
    )


def make_run(dataset, status=RunStatus.QUEUED, **fields) -> Run:
    config = validate_run_config({"epochs": 2}, dataset)
    return Run.objects.create(project=dataset.project, dataset=dataset, config=config, status=status,
                              total_epochs=2, **fields)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def errors(response) -> list[dict]:
    return response.json()["errors"]


@pytest.fixture
def digits(project):
    return make_dataset(project, "digits")


@pytest.fixture
def wine(project):
    return make_dataset(project, "wine")


@pytest.fixture
def queued_run(digits):
    return make_run(digits, name="baseline")


@pytest.fixture
def people(owner, maintainer, viewer, outsider):
    return {"owner": owner, "maintainer": maintainer, "viewer": viewer, "outsider": outsider, "anonymous": None}


# Starting runs


def test_create_run_stores_queued_run(owner, project, digits):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": digits.pk, "name": "small mlp",
                                             "config": {"epochs": 2, "lr": 0.01, "hidden_sizes": [32]}},
                                      format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.status == RunStatus.QUEUED
    assert run.project == project
    assert run.dataset == digits
    assert run.name == "small mlp"
    assert run.created_by == owner
    assert run.total_epochs == 2
    assert run.config["lr"] == 0.01
    assert run.config["hidden_sizes"] == [32]
    assert run.config["batch_size"] == 64  # filled in with the default
    assert run.config["task"] == "classification"
    assert body["status"] == "queued"
    assert body["config"] == run.config
    assert body["project"] == project.pk
    assert body["dataset"] == digits.pk
    assert body["dataset_name"] == "digits"
    assert body["url"] == f"http://testserver/runs/{run.pk}/"
    assert body["mlflow_url"] is None
    assert body["progress"] == 0.0
    assert body["eta_seconds"] is None


def test_create_run_queues_after_commit(maintainer, project, digits, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(maintainer).post(RUNS, {"project": project.pk, "dataset": digits.pk,
                                                      "config": {"epochs": 1}}, format="json")

    assert response.status_code == 201, response.content
    assert len(callbacks) >= 1
    run = Run.objects.get(pk=response.json()["id"])
    assert run.celery_task_id != ""
    assert run.created_by == maintainer


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"lr": -1}, "config.lr", "lr: must lie in (0.0, 10.0], got -1.0"),
        ({"epochs": 0}, "config.epochs", "epochs: must be from 1 to 10000, got 0"),
        ({"learning_rate": 0.1}, "config.learning_rate",
         "learning_rate: unknown parameter; expected one of batch_size, conv_channels, device, dropout, "
         "early_stopping_patience, epochs, gradient_checkpointing, hidden_sizes, lr, model, momentum, optimizer, "
         "precision, schedule, seed, task, val_split, weight_decay"),
        ({"model": "cnn"}, "config.model",
         "model: the CNN needs an image dataset; wine has examples of shape [13], use the MLP"),
        ({"task": "regression"}, "config.task",
         "task: must match the dataset's task classification, got regression"),
    ],
)
def test_create_run_rejects_bad_config(owner, project, wine, config, field, message):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": wine.pk, "config": config},
                                      format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": field, "code": "invalid", "message": message}]
    assert not Run.objects.exists()


def test_create_run_accepts_cnn_on_images(owner, project, digits):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": digits.pk,
                                             "config": {"model": "cnn", "epochs": 1}}, format="json")

    assert response.status_code == 201, response.content
    assert Run.objects.get().config["model"] == "cnn"


def test_create_run_rejects_config_not_object(owner, project, digits):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": digits.pk, "config": [1, 2]},
                                      format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": "config", "code": "not_a_dict",
                                 "message": 'Expected a dictionary of items but got type "list".'}]


def test_create_run_rejects_unknown_dataset(owner, project):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": 9999}, format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": "dataset", "code": "does_not_exist",
                                 "message": "Dataset 9999 was not found."}]


def test_create_run_rejects_dataset_of_other_project(owner, team, project):
    other_project = Project.objects.create(team=team, name="wines")
    other_dataset = make_dataset(other_project, "wine")

    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": other_dataset.pk}, format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": "dataset", "code": "wrong_project",
                                 "message": "Dataset wine belongs to another project, not to digits."}]
    assert not Run.objects.exists()


def test_create_run_hides_dataset_of_other_team(owner, project, outsider):
    hidden_project = Project.objects.create(team=outsider.teams.get(), name="speech commands")
    hidden_dataset = make_dataset(hidden_project, "wine")

    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": hidden_dataset.pk},
                                      format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": "dataset", "code": "does_not_exist",
                                 "message": f"Dataset {hidden_dataset.pk} was not found."}]


def test_create_run_requires_fields(owner):
    response = client_for(owner).post(RUNS, {}, format="json")

    assert response.status_code == 400
    assert errors(response) == [
        {"field": "project", "code": "required", "message": "This field is required."},
        {"field": "dataset", "code": "required", "message": "This field is required."},
    ]


def test_create_run_rejects_form_encoding(owner, project, digits):
    response = client_for(owner).post(RUNS, {"project": project.pk, "dataset": digits.pk})

    assert response.status_code == 415
    assert errors(response)[0]["code"] == "unsupported_media_type"


# Who may do what


@pytest.mark.parametrize(
    ("person", "list_count", "read", "create", "cancel", "metrics"),
    [
        ("owner", 1, 200, 201, 200, 200),
        ("maintainer", 1, 200, 201, 200, 200),
        ("viewer", 1, 200, 403, 403, 200),
        ("outsider", 0, 404, 400, 404, 404),
        ("anonymous", None, 403, 403, 403, 403),
    ],
)
def test_permissions_matrix(people, project, digits, queued_run, person, list_count, read, create, cancel,
                            metrics):
    client = client_for(people[person])

    listed = client.get(RUNS)
    if list_count is None:
        assert listed.status_code == 403
    else:
        assert listed.status_code == 200
        assert listed.json()["count"] == list_count
    assert client.get(f"{RUNS}{queued_run.pk}/").status_code == read
    assert client.get(f"{RUNS}{queued_run.pk}/metrics/").status_code == metrics
    created = client.post(RUNS, {"project": project.pk, "dataset": digits.pk, "config": {"epochs": 1}},
                          format="json")
    assert created.status_code == create
    assert client.post(f"{RUNS}{queued_run.pk}/cancel/").status_code == cancel

    queued_run.refresh_from_db()
    expected_status = RunStatus.CANCELLED if cancel == 200 else RunStatus.QUEUED
    assert queued_run.status == expected_status
    assert Run.objects.count() == (2 if create == 201 else 1)


def test_viewer_create_message(viewer, project, digits):
    # The role is checked before the config, so a viewer is not walked through fixing a request they may not make.
    response = client_for(viewer).post(RUNS, {"project": project.pk, "dataset": digits.pk, "config": {"lr": -1}},
                                       format="json")

    assert response.status_code == 403
    assert errors(response) == [{"field": None, "code": "permission_denied",
                                 "message": "Only owners and maintainers of project digits may start runs."}]


def test_viewer_cancel_message(viewer, queued_run):
    response = client_for(viewer).post(f"{RUNS}{queued_run.pk}/cancel/")

    assert response.status_code == 403
    assert errors(response) == [{"field": None, "code": "permission_denied",
                                 "message": "Only owners and maintainers of project digits may cancel its runs."}]


def test_outsider_create_message(outsider, project, digits):
    response = client_for(outsider).post(RUNS, {"project": project.pk, "dataset": digits.pk}, format="json")

    assert response.status_code == 400
    assert errors(response) == [
        {"field": "project", "code": "does_not_exist", "message": f"Project {project.pk} was not found."},
        {"field": "dataset", "code": "does_not_exist", "message": f"Dataset {digits.pk} was not found."},
    ]


def test_outsider_read_message(outsider, queued_run):
    response = client_for(outsider).get(f"{RUNS}{queued_run.pk}/")

    assert response.status_code == 404
    assert errors(response) == [{"field": None, "code": "not_found",
                                 "message": f"Run {queued_run.pk} was not found."}]


def test_anonymous_message(db):
    response = client_for(None).get(RUNS)

    assert response.status_code == 403
    assert errors(response) == [{"field": None, "code": "not_authenticated",
                                 "message": "Authentication credentials were not provided."}]


def test_errors_translated_to_chinese(db):
    response = client_for(None).get(RUNS, HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 403
    assert errors(response)[0]["message"] == "身份认证信息未提供。"


def test_staff_sees_every_project(django_user_model, queued_run):
    operator = django_user_model.objects.create_user("sam", "sam@example.com", PASSWORD, is_staff=True)

    response = client_for(operator).get(RUNS)

    assert response.status_code == 200
    assert [run["id"] for run in response.json()["results"]] == [queued_run.pk]


# Reading runs


def test_retrieve_run_fields(viewer, settings, queued_run):
    settings.MLFLOW_UI_URL = "http://127.0.0.1:5001/"
    Run.objects.filter(pk=queued_run.pk).update(mlflow_run_id="abc123", mlflow_experiment_id="7",
                                                summary={"val/accuracy": 0.93})

    response = client_for(viewer).get(f"{RUNS}{queued_run.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == queued_run.pk
    assert body["name"] == "baseline"
    assert body["status"] == "queued"
    assert body["status_display"] == "Queued"
    assert body["mlflow_run_id"] == "abc123"
    assert body["mlflow_url"] == "http://127.0.0.1:5001/#/experiments/7/runs/abc123"
    assert body["main_metric_key"] == "val/accuracy"
    assert body["main_metric"] == 0.93
    assert body["url"] == f"http://testserver/runs/{queued_run.pk}/"
    for field in ("epoch", "total_epochs", "step", "total_steps", "progress", "eta_seconds", "duration_seconds",
                  "summary", "confusion_matrix", "error", "diverged", "created_at", "started_at", "finished_at"):
        assert field in body


def test_mlflow_url_needs_ui_address(viewer, settings, queued_run):
    settings.MLFLOW_UI_URL = ""
    Run.objects.filter(pk=queued_run.pk).update(mlflow_run_id="abc123", mlflow_experiment_id="7")

    response = client_for(viewer).get(f"{RUNS}{queued_run.pk}/")

    assert response.json()["mlflow_url"] is None


def test_run_url_without_web_routes(monkeypatch, queued_run):
    from django.urls import NoReverseMatch

    from training import serializers

    def no_route(*args, **kwargs):
        raise NoReverseMatch("run-detail")

    monkeypatch.setattr(serializers, "reverse", no_route)

    assert serializers.run_page_path(queued_run) == f"/runs/{queued_run.pk}/"


def test_retrieve_non_numeric_id(owner, db):
    response = client_for(owner).get(f"{RUNS}latest/")

    assert response.status_code == 404
    assert errors(response) == [{"field": None, "code": "not_found", "message": "Run latest was not found."}]


def test_list_newest_first_and_filters(owner, team, project, digits):
    other_project = Project.objects.create(team=team, name="wines")
    other_dataset = make_dataset(other_project, "wine")
    first = make_run(digits, name="first")
    second = make_run(digits, status=RunStatus.SUCCEEDED, name="second")
    third = make_run(other_dataset, name="third")
    client = client_for(owner)

    everything = client.get(RUNS).json()
    by_project = client.get(RUNS, {"project": project.pk}).json()
    by_status = client.get(RUNS, {"status": "queued"}).json()
    both = client.get(RUNS, {"project": project.pk, "status": "succeeded"}).json()

    assert [run["id"] for run in everything["results"]] == [third.pk, second.pk, first.pk]
    assert [run["id"] for run in by_project["results"]] == [second.pk, first.pk]
    assert [run["id"] for run in by_status["results"]] == [third.pk, first.pk]
    assert [run["id"] for run in both["results"]] == [second.pk]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "done"}, "status", '"done" is not a valid choice.'),
        ({"project": "digits"}, "project", "A valid integer is required."),
        ({"project": "0"}, "project", "Ensure this value is greater than or equal to 1."),
    ],
)
def test_list_rejects_bad_filters(owner, params, field, message):
    response = client_for(owner).get(RUNS, params)

    assert response.status_code == 400
    assert [(e["field"], e["message"]) for e in errors(response)] == [(field, message)]


def test_list_query_count_bounded(owner, project, digits, wine, django_assert_max_num_queries):
    for index in range(20):
        make_run(digits if index % 2 else wine, name=f"run {index}")
    client = client_for(owner)

    # Session, user, page count and page rows. The serializer reads project and
    # dataset names from the joined rows instead of querying once per run.
    with django_assert_max_num_queries(5):
        response = client.get(RUNS)

    assert response.status_code == 200
    assert response.json()["count"] == 20
    assert {run["dataset_name"] for run in response.json()["results"]} == {"digits", "wine"}


# Cancelling


def test_cancel_queued_run(maintainer, queued_run):
    response = client_for(maintainer).post(f"{RUNS}{queued_run.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    queued_run.refresh_from_db()
    assert queued_run.status == RunStatus.CANCELLED
    assert queued_run.finished_at is not None


def test_cancel_finished_run_conflicts(owner, digits):
    run = make_run(digits, status=RunStatus.SUCCEEDED, summary={"val/accuracy": 0.9})

    response = client_for(owner).post(f"{RUNS}{run.pk}/cancel/")

    assert response.status_code == 409
    assert errors(response) == [{"field": None, "code": "already_finished",
                                 "message": f"Run {run.pk} has already finished (Succeeded), "
                                            "so it cannot be cancelled."}]
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is None
    assert run.summary == {"val/accuracy": 0.9}


def test_cancel_rejects_get(owner, queued_run):
    response = client_for(owner).get(f"{RUNS}{queued_run.pk}/cancel/")

    assert response.status_code == 405
    queued_run.refresh_from_db()
    assert queued_run.status == RunStatus.QUEUED


# Metrics


@pytest.fixture
def run_with_metrics(queued_run):
    rows = [
        (1, "train/loss", 1, 0, 2.30, ""),
        (2, "lr", 1, 0, 0.001, ""),
        (3, "train/loss", 2, 0, 1.70, ""),
        (4, "train/loss", 3, 0, None, "nan"),
        (5, "val/accuracy", 3, 1, 0.62, ""),
        (6, "train/loss", 4, 1, 1.10, ""),
    ]
    Metric.objects.bulk_create(
        Metric(run=queued_run, seq=seq, key=key, step=step, epoch=epoch, value=value, nonfinite=nonfinite,
               reported_at=1_700_000_000.0 + seq)
        for seq, key, step, epoch, value, nonfinite in rows
    )
    Run.objects.filter(pk=queued_run.pk).update(last_seq=6)
    return queued_run


def strict_json(response):
    """Parse the body, failing on NaN or Infinity, which JSON does not allow."""

    def reject(constant):
        raise AssertionError(f"invalid JSON constant {constant}")

    return json.loads(response.content, parse_constant=reject)


def test_metrics_all_points(viewer, run_with_metrics):
    response = client_for(viewer).get(f"{RUNS}{run_with_metrics.pk}/metrics/")

    assert response.status_code == 200
    body = strict_json(response)
    assert [point["seq"] for point in body["points"]] == [1, 2, 3, 4, 5, 6]
    assert body["last_seq"] == 6
    assert body["has_more"] is False
    assert body["points"][0] == {"seq": 1, "key": "train/loss", "step": 1, "epoch": 0, "value": 2.3,
                                 "nonfinite": "", "t": 1_700_000_001.0}


def test_metrics_nan_is_null(viewer, run_with_metrics):
    response = client_for(viewer).get(f"{RUNS}{run_with_metrics.pk}/metrics/", {"after": 3, "limit": 1})

    body = strict_json(response)
    assert body["points"] == [{"seq": 4, "key": "train/loss", "step": 3, "epoch": 0, "value": None,
                               "nonfinite": "nan", "t": 1_700_000_004.0}]
    assert body["last_seq"] == 4
    assert body["has_more"] is True


def test_metrics_after_keys_limit(viewer, run_with_metrics):
    url = f"{RUNS}{run_with_metrics.pk}/metrics/"
    client = client_for(viewer)

    first = client.get(url, {"after": 1, "keys": "train/loss,val/accuracy", "limit": 2}).json()
    second = client.get(url, {"after": first["last_seq"], "keys": "train/loss,val/accuracy", "limit": 2}).json()
    last = client.get(url, {"after": second["last_seq"], "keys": "train/loss,val/accuracy", "limit": 2}).json()

    assert [(p["seq"], p["key"]) for p in first["points"]] == [(3, "train/loss"), (4, "train/loss")]
    assert first["has_more"] is True
    assert [(p["seq"], p["key"]) for p in second["points"]] == [(5, "val/accuracy"), (6, "train/loss")]
    assert second["has_more"] is False
    assert last == {"points": [], "last_seq": 6, "has_more": False}


def test_metrics_single_key(viewer, run_with_metrics):
    response = client_for(viewer).get(f"{RUNS}{run_with_metrics.pk}/metrics/", {"keys": "lr"})

    assert [(p["seq"], p["value"]) for p in response.json()["points"]] == [(2, 0.001)]


def test_metrics_keys_spaces_and_blanks(viewer, run_with_metrics):
    response = client_for(viewer).get(f"{RUNS}{run_with_metrics.pk}/metrics/", {"keys": " lr , ,val/accuracy"})

    assert [p["seq"] for p in response.json()["points"]] == [2, 5]


def test_metrics_infinity_written_as_float(viewer, queued_run):
    # The reporter stores NULL with `nonfinite` set, but a row written as a raw
    # float keeps infinity in both SQLite and PostgreSQL; JSON cannot carry it.
    Metric.objects.create(run=queued_run, seq=1, key="train/loss", step=1, value=-math.inf, reported_at=1.0)

    body = strict_json(client_for(viewer).get(f"{RUNS}{queued_run.pk}/metrics/"))

    assert body["points"][0]["value"] is None
    assert body["points"][0]["nonfinite"] == "-inf"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": 20001}, "limit", "Ensure this value is less than or equal to 20000."),
        ({"limit": 0}, "limit", "Ensure this value is greater than or equal to 1."),
        ({"after": -1}, "after", "Ensure this value is greater than or equal to 0."),
        ({"after": "last"}, "after", "A valid integer is required."),
    ],
)
def test_metrics_rejects_bad_params(viewer, queued_run, params, field, message):
    response = client_for(viewer).get(f"{RUNS}{queued_run.pk}/metrics/", params)

    assert response.status_code == 400
    assert errors(response) == [{"field": field, "code": errors(response)[0]["code"], "message": message}]


def test_metrics_limit_maximum_accepted(viewer, run_with_metrics):
    response = client_for(viewer).get(f"{RUNS}{run_with_metrics.pk}/metrics/", {"limit": 20000})

    assert response.status_code == 200
    assert len(response.json()["points"]) == 6


# Tokens


def test_token_login_and_use(owner, queued_run):
    anonymous = APIClient()

    response = anonymous.post("/api/v1/auth/token/", {"username": "olivia", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    key = response.json()["token"]
    assert response.json()["username"] == "olivia"
    assert Token.objects.get(user=owner).key == key

    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    listed = with_token.get(RUNS)
    assert listed.status_code == 200
    assert [run["id"] for run in listed.json()["results"]] == [queued_run.pk]

    again = anonymous.post("/api/v1/auth/token/", {"username": "olivia", "password": PASSWORD}, format="json")
    assert again.json()["token"] == key


def test_token_wrong_password(owner):
    response = APIClient().post("/api/v1/auth/token/", {"username": "olivia", "password": "wrong"}, format="json")

    assert response.status_code == 400
    assert errors(response) == [{"field": None, "code": "authorization",
                                 "message": "Unable to log in with provided credentials."}]
    assert not Token.objects.exists()


def test_token_revoke(owner):
    key = Token.objects.create(user=owner).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = client.delete("/api/v1/auth/token/")

    assert response.status_code == 204
    assert not Token.objects.filter(user=owner).exists()
    after = client.get(RUNS)
    # Session authentication comes first and sends no WWW-Authenticate header, so DRF answers 403, not 401.
    assert after.status_code == 403
    assert errors(after) == [{"field": None, "code": "authentication_failed", "message": "Invalid token."}]
