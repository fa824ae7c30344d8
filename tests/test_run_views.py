"""Run pages: creating a run from the form, the run page, cancelling, and who may do what."""

import json
from datetime import UTC, datetime

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from projects.models import Dataset
from training.forms import suggested_config
from training.models import Run, RunStatus
from training.services import create_run


def form_data(dataset, **overrides) -> dict:
    """POST data of the run form filled with the dataset's suggested config."""
    config = suggested_config(dataset)
    data = {
        "dataset": dataset.pk, "name": "", "source": "fields",
        "hidden_sizes": ",".join(map(str, config["hidden_sizes"])),
        "conv_channels": ",".join(map(str, config["conv_channels"])),
        "config_json": "",
    }
    for key in ("model", "dropout", "optimizer", "lr", "momentum", "weight_decay", "schedule", "batch_size", "epochs",
                "seed", "val_split", "early_stopping_patience", "precision"):
        data[key] = config[key]
    if config["gradient_checkpointing"]:
        data["gradient_checkpointing"] = "on"
    data.update(overrides)
    return data


@pytest.fixture
def wine_dataset(project):
    """A tabular dataset row (13 features, 3 classes); the form never reads its file."""
    return Dataset.objects.create(
        project=project, name="wine", format="npz", task="classification", sha256="0" * 64,
        file_path="datasets/wine.npz", size_bytes=1, num_rows=178, num_features=13, input_shape=[13],
        num_classes=3, class_names=["0", "1", "2"],
    )


@pytest.fixture
def run(project, digits_dataset, owner):
    return create_run(project, digits_dataset, {"model": "cnn", "epochs": 3}, user=owner, name="first try")


def create_url(project):
    return reverse("run-create", args=[project.pk])


# ---- Creating a run ---------------------------------------------------------


def test_owner_creates_run_from_form(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(digits_dataset, name="cnn baseline", lr="0.005",
                                                          epochs="4", hidden_sizes="96, 48"))

    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run-detail", args=[run.pk])
    assert run.status == RunStatus.QUEUED
    assert run.name == "cnn baseline"
    assert run.project == project
    assert run.dataset == digits_dataset
    assert run.created_by == owner
    assert run.total_epochs == 4
    assert run.config["model"] == "cnn"
    assert run.config["lr"] == 0.005
    assert run.config["epochs"] == 4
    assert run.config["hidden_sizes"] == [96, 48]
    assert run.config["conv_channels"] == [16, 32]
    assert run.config["task"] == "classification"


def test_maintainer_creates_run(client, maintainer, project, digits_dataset):
    client.force_login(maintainer)

    response = client.post(create_url(project), form_data(digits_dataset))

    assert response.status_code == 302
    assert Run.objects.get().created_by == maintainer


def test_bad_lr_shows_message_and_stores_nothing(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(digits_dataset, lr="-1"))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="field-error" role="alert">lr: must lie in (0.0, 10.0], got -1.0</div>' in page
    assert response.context["form"].errors["lr"] == ["lr: must lie in (0.0, 10.0], got -1.0"]
    assert Run.objects.count() == 0


def test_bad_hidden_sizes_names_field(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(digits_dataset, hidden_sizes="128,wide"))

    assert response.status_code == 200
    assert response.context["form"].errors["hidden_sizes"] == [
        "hidden_sizes: must be a comma-separated list of integers such as 128,64, got '128,wide'"]
    assert Run.objects.count() == 0


def test_zero_width_layer_names_its_index(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(digits_dataset, hidden_sizes="64,0"))

    assert response.context["form"].errors["hidden_sizes"] == ["hidden_sizes[1]: must be from 1 to 65536, got 0"]
    assert Run.objects.count() == 0


def test_cnn_on_tabular_dataset_rejected(client, owner, project, wine_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(wine_dataset, model="cnn"))

    assert response.status_code == 200
    assert response.context["form"].errors["model"] == [
        "model: the CNN needs an image dataset; wine has examples of shape [13], use the MLP"]
    assert Run.objects.count() == 0


def test_form_keeps_typed_values_after_error(client, owner, project, digits_dataset):
    client.force_login(owner)

    response = client.post(create_url(project), form_data(digits_dataset, lr="-1", name="keep me", epochs="7"))

    page = response.content.decode()
    assert 'value="keep me"' in page
    assert 'name="epochs" value="7"' in page


def test_json_config_creates_run(client, owner, project, digits_dataset):
    client.force_login(owner)
    typed = {"model": "mlp", "hidden_sizes": [32], "lr": 0.01, "epochs": 2, "device": "cpu"}

    response = client.post(create_url(project), {"dataset": digits_dataset.pk, "name": "from json",
                                                 "source": "json", "config_json": json.dumps(typed)})

    run = Run.objects.get()
    assert response.status_code == 302
    assert run.name == "from json"
    assert run.config["model"] == "mlp"
    assert run.config["hidden_sizes"] == [32]
    assert run.config["lr"] == 0.01
    assert run.config["device"] == "cpu"
    # Parameters left out take their defaults.
    assert run.config["batch_size"] == 64


@pytest.mark.parametrize(("typed", "message"), [
    ('{"learning_rate": 0.1}',
     "learning_rate: unknown parameter; expected one of batch_size, conv_channels, device, dropout, "
     "early_stopping_patience, epochs, gradient_checkpointing, hidden_sizes, lr, model, momentum, optimizer, "
     "precision, schedule, seed, task, val_split, weight_decay"),
    ('{"lr": 0.1,}', "config: is not valid JSON: Expecting property name enclosed in double quotes at line 1, "
                     "column 12"),
    ("[1, 2]", "config: must be a JSON object, got list"),
    ("", 'config: is empty; type a JSON object such as {"lr": 0.001}'),
    ('{"task": "regression"}', "task: must match the dataset's task classification, got regression"),
])
def test_bad_json_config_shows_message(client, owner, project, digits_dataset, typed, message):
    client.force_login(owner)

    response = client.post(create_url(project), {"dataset": digits_dataset.pk, "source": "json",
                                                 "config_json": typed})

    assert response.status_code == 200
    assert response.context["form"].errors["config_json"] == [message]
    assert Run.objects.count() == 0
    # The JSON section stays open so the message is seen.
    assert '<details class="card json-config" id="json-config" open>' in response.content.decode()


def test_dataset_of_other_project_rejected(client, owner, project, team, digits_dataset):
    client.force_login(owner)
    other_project = team.projects.create(name="other")

    response = client.post(create_url(other_project), form_data(digits_dataset))

    assert response.status_code == 200
    assert "dataset" in response.context["form"].errors
    assert Run.objects.count() == 0


def test_create_page_suggests_digits_defaults(client, owner, project, digits_dataset, wine_dataset):
    client.force_login(owner)

    response = client.get(create_url(project), {"dataset": digits_dataset.pk})

    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["dataset"] == digits_dataset.pk
    assert form.initial["model"] == "cnn"
    assert form.initial["conv_channels"] == "16,32"
    assert form.initial["hidden_sizes"] == "64"
    assert form.initial["lr"] == 0.003
    assert form.initial["epochs"] == 10
    assert json.loads(form.initial["config_json"])["model"] == "cnn"
    info = response.context["dataset_info"]
    assert info[str(digits_dataset.pk)]["image"] is True
    assert info[str(wine_dataset.pk)]["image"] is False
    assert info[str(wine_dataset.pk)]["defaults"]["model"] == "mlp"


def test_create_page_preselects_dataset_from_query(client, owner, project, digits_dataset, wine_dataset):
    client.force_login(owner)

    response = client.get(create_url(project), {"dataset": wine_dataset.pk})

    form = response.context["form"]
    assert form.initial["dataset"] == wine_dataset.pk
    assert form.initial["model"] == "mlp"
    assert f'<option value="{wine_dataset.pk}" selected>' in response.content.decode()


def test_create_page_without_dataset_links_upload(client, owner, project):
    client.force_login(owner)

    response = client.get(create_url(project))

    assert response.status_code == 200
    assert reverse("dataset-upload", args=[project.pk]) in response.content.decode()
    assert "run-form" not in response.content.decode()


def test_viewer_gets_403_on_create(client, viewer, project, digits_dataset):
    client.force_login(viewer)

    assert client.get(create_url(project)).status_code == 403
    assert client.post(create_url(project), form_data(digits_dataset)).status_code == 403
    assert Run.objects.count() == 0


def test_outsider_gets_404_on_create(client, outsider, project, digits_dataset):
    client.force_login(outsider)

    assert client.get(create_url(project)).status_code == 404
    assert client.post(create_url(project), form_data(digits_dataset)).status_code == 404
    assert Run.objects.count() == 0


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(create_url(project))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# ---- The run page -----------------------------------------------------------


def test_run_page_shows_state_and_config(client, owner, run):
    client.force_login(owner)

    response = client.get(reverse("run-detail", args=[run.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span id="run-status" class="badge status-queued">Queued</span>' in page
    assert '<tr><th scope="row">model</th><td>cnn</td></tr>' in page
    assert '<tr><th scope="row">conv_channels</th><td>16, 32</td></tr>' in page
    assert reverse("dataset-detail", args=[run.dataset.pk]) in page
    assert reverse("run-cancel", args=[run.pk]) in page
    assert "vendor/plotly/plotly.min.js" in page
    live = response.context["live"]
    assert live["ws_path"] == f"/ws/runs/{run.pk}/"
    assert live["state"]["status"] == "queued"
    assert live["log_url"] == reverse("run-log", args=[run.pk])


def test_run_page_hides_cancel_from_viewer(client, viewer, run):
    client.force_login(viewer)

    response = client.get(reverse("run-detail", args=[run.pk]))

    assert response.status_code == 200
    assert reverse("run-cancel", args=[run.pk]) not in response.content.decode()


def test_run_page_of_finished_run(client, owner, run, settings):
    settings.MLFLOW_UI_URL = "http://127.0.0.1:5001/"
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, started_at=timezone.now(), finished_at=timezone.now(), epoch=3, step=69,
        total_steps=69, summary={"val/accuracy": 0.9583333, "val/loss": 0.1234567, "best_epoch": 3},
        confusion_matrix=[[5, 1], [0, 4]], mlflow_run_id="abc123", mlflow_experiment_id="7")
    client.force_login(owner)

    response = client.get(reverse("run-detail", args=[run.pk]))

    page = response.content.decode()
    assert '<td class="num" title="0.9583333">0.9583</td>' in page
    assert '<td class="num" title="0.1234567">0.1235</td>' in page
    assert 'href="http://127.0.0.1:5001/#/experiments/7/runs/abc123"' in page
    assert 'id="chart-confusion"' in page
    assert reverse("run-cancel", args=[run.pk]) not in page
    assert '<div id="run-progress" style="width: 100%">' in page


def test_run_page_shows_error_and_divergence(client, owner, run):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, diverged=True,
                                         error="diverged: train/loss became nan at step 12 (epoch 1)")
    client.force_login(owner)

    response = client.get(reverse("run-detail", args=[run.pk]))

    page = response.content.decode()
    assert '<pre class="error-text" id="run-error">diverged: train/loss became nan at step 12 (epoch 1)</pre>' in page
    assert '<div id="diverged-warning" class="alert warn">' in page


def test_run_page_without_mlflow_ui_has_no_link(client, owner, run, settings):
    settings.MLFLOW_UI_URL = ""
    Run.objects.filter(pk=run.pk).update(mlflow_run_id="abc123", mlflow_experiment_id="7")
    client.force_login(owner)

    response = client.get(reverse("run-detail", args=[run.pk]))

    assert "#/experiments/" not in response.content.decode()


@pytest.mark.parametrize("name", ["run-detail", "run-log", "run-result", "run-row"])
def test_outsider_gets_404_on_run_pages(client, outsider, run, name):
    client.force_login(outsider)

    assert client.get(reverse(name, args=[run.pk])).status_code == 404


def test_missing_run_is_404(client, owner, db):
    client.force_login(owner)

    assert client.get(reverse("run-detail", args=[999999])).status_code == 404


def test_log_endpoint_returns_new_text_only(client, viewer, run):
    Run.objects.filter(pk=run.pk).update(log="line one\nline two\n")
    client.force_login(viewer)

    whole = client.get(reverse("run-log", args=[run.pk])).json()
    rest = client.get(reverse("run-log", args=[run.pk]), {"offset": 9}).json()

    assert whole == {"text": "line one\nline two\n", "offset": 18, "reset": True, "active": True}
    assert rest == {"text": "line two\n", "offset": 18, "reset": False, "active": True}


def test_result_fragment_has_summary_and_times(client, owner, run, settings):
    settings.MLFLOW_UI_URL = "http://127.0.0.1:5001"
    finished = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, summary={"val/accuracy": 0.5},
                                         confusion_matrix=[[1, 0], [1, 0]], finished_at=finished,
                                         mlflow_run_id="abc123", mlflow_experiment_id="7")
    client.force_login(owner)

    response = client.get(reverse("run-result", args=[run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith('<div id="run-result">')
    assert '<div id="run-info">' in html
    assert '<td class="num" title="0.5">0.5</td>' in html
    assert "<dd>2026-03-01 12:30:05</dd>" in html
    assert 'href="http://127.0.0.1:5001/#/experiments/7/runs/abc123"' in html
    assert response.context["confusion"] == {"z": [[1, 0], [1, 0]], "labels": ["0", "1"]}


# ---- Cancelling -------------------------------------------------------------


def test_cancel_flips_status(client, owner, run):
    client.force_login(owner)

    response = client.post(reverse("run-cancel", args=[run.pk]), follow=True)

    run.refresh_from_db()
    assert response.redirect_chain == [(reverse("run-detail", args=[run.pk]), 302)]
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert [str(m) for m in response.context["messages"]] == ["Run “first try” was cancelled."]


def test_cancel_finished_run_changes_nothing(client, maintainer, run):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    client.force_login(maintainer)

    response = client.post(reverse("run-cancel", args=[run.pk]), follow=True)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert [str(m) for m in response.context["messages"]] == [
        "Run “first try” had already finished; nothing was cancelled."]


def test_viewer_gets_403_on_cancel(client, viewer, run):
    client.force_login(viewer)

    response = client.post(reverse("run-cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 403
    assert run.status == RunStatus.QUEUED


def test_outsider_gets_404_on_cancel(client, outsider, run):
    client.force_login(outsider)

    response = client.post(reverse("run-cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 404
    assert run.status == RunStatus.QUEUED


def test_cancel_needs_post(client, owner, run):
    client.force_login(owner)

    response = client.get(reverse("run-cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 405
    assert run.status == RunStatus.QUEUED


# ---- The project's run table ------------------------------------------------


def render_project_runs(user, project, can_edit):
    request = RequestFactory().get("/")
    request.user = user
    return render_to_string("training/_project_runs.html",
                            {"project": project, "runs": project.runs.all(), "can_edit": can_edit}, request)


def test_project_runs_newest_first(owner, project, digits_dataset):
    older = create_run(project, digits_dataset, {"model": "mlp", "lr": 0.002}, user=owner, name="older")
    newer = create_run(project, digits_dataset, {"model": "cnn", "batch_size": 32}, user=owner, name="newer")
    Run.objects.filter(pk=older.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=5))
    Run.objects.filter(pk=newer.pk).update(status=RunStatus.SUCCEEDED, summary={"val/accuracy": 0.987654})

    html = render_project_runs(owner, project, can_edit=True)

    assert html.index(">newer</a>") < html.index(">older</a>")
    assert '<span class="badge status-succeeded" data-field="status">Succeeded</span>' in html
    assert 'title="val/accuracy = 0.987654">0.9877 <span class="muted">val/accuracy</span>' in html
    assert '<td class="num" title="0.002">0.002</td>' in html
    assert '<td class="num">32</td>' in html
    assert f'href="{reverse("run-create", args=[project.pk])}"' in html
    assert f'data-rows-url="{reverse("project-run-rows", args=[project.pk])}"' in html


def test_project_runs_hide_new_run_from_viewer(viewer, project):
    html = render_project_runs(viewer, project, can_edit=False)

    assert reverse("run-create", args=[project.pk]) not in html
    assert "No runs yet." in html


def test_run_row_endpoint(client, viewer, run):
    client.force_login(viewer)

    response = client.get(reverse("run-row", args=[run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith(f'<tr data-run-id="{run.pk}" data-status="queued">')
    assert f'<a href="{reverse("run-detail", args=[run.pk])}">first try</a>' in html


def test_project_run_rows_endpoint(client, viewer, outsider, run, project):
    client.force_login(viewer)
    response = client.get(reverse("project-run-rows", args=[project.pk]))
    assert response.status_code == 200
    assert f'data-run-id="{run.pk}"' in response.content.decode()

    client.force_login(outsider)
    assert client.get(reverse("project-run-rows", args=[project.pk])).status_code == 404

