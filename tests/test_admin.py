"""The Django admin as the operators' console: runs, metrics, teams and datasets."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from projects.models import Dataset, Membership, Role
from training.models import Metric, Run, RunStatus
from training.services import validate_run_config

PASSWORD = "secret-pass-123"


@pytest.fixture
def operator(db, django_user_model):
    """Ada runs the installation: staff with every permission, member of no team."""
    return django_user_model.objects.create_superuser("ada", "ada@example.com", PASSWORD)


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def dataset(project):
    # Only the row is needed: the admin never reads the file.
    return Dataset.objects.create(
        project=project, name="digits", format="npz", task="classification", sha256="ab" * 32,
        file_path="datasets/digits.npz", size_bytes=1_234_567, num_rows=1797, num_features=64,
        input_shape=[8, 8], num_classes=10, class_names=[str(n) for n in range(10)], builtin=True,
    )


def make_run(dataset, status=RunStatus.QUEUED, **fields) -> Run:
    config = validate_run_config({"epochs": 2}, dataset)
    return Run.objects.create(project=dataset.project, dataset=dataset, config=config, status=status,
                              total_epochs=2, **fields)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# Runs


def test_run_changelist_shows_progress(admin_client, dataset):
    started = timezone.now() - timedelta(minutes=5)
    make_run(dataset, status=RunStatus.SUCCEEDED, name="baseline", worker="celery@gpu-1", device="cpu",
             attempt=1, epoch=2, step=40, total_steps=40, started_at=started,
             finished_at=started + timedelta(seconds=125), summary={"val/accuracy": 0.91234})

    response = admin_client.get("/admin/training/run/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "baseline" in page
    assert "celery@gpu-1" in page
    assert "epoch 2/2, step 40/40" in page
    assert "0:02:05" in page
    assert "val/accuracy = 0.9123" in page
    assert "Succeeded" in page


def test_run_changelist_query_count(admin_client, dataset, django_assert_max_num_queries):
    for index in range(30):
        make_run(dataset, name=f"run {index}")

    # Session, user, counts, the filters' choices, the page rows and the date
    # hierarchy. None of them repeats per run.
    with django_assert_max_num_queries(9):
        response = admin_client.get("/admin/training/run/")

    assert response.status_code == 200
    assert response.context["cl"].result_count == 30


def test_run_changelist_filters(admin_client, dataset):
    queued = make_run(dataset, name="queued one")
    diverged = make_run(dataset, status=RunStatus.FAILED, name="blew up", diverged=True)

    by_status = admin_client.get("/admin/training/run/", {"status__exact": "failed"})
    by_diverged = admin_client.get("/admin/training/run/", {"diverged__exact": "1"})
    by_project = admin_client.get("/admin/training/run/", {"project__id__exact": dataset.project_id})

    assert list(by_status.context["cl"].result_list) == [diverged]
    assert list(by_diverged.context["cl"].result_list) == [diverged]
    assert set(by_project.context["cl"].result_list) == {queued, diverged}


def test_run_search_by_name_and_id(admin_client, dataset):
    baseline = make_run(dataset, name="baseline")
    wider = make_run(dataset, name="wider")

    by_name = admin_client.get("/admin/training/run/", {"q": "wider"})
    by_id = admin_client.get("/admin/training/run/", {"q": str(baseline.pk)})
    by_text = admin_client.get("/admin/training/run/", {"q": "nothing like it"})

    assert list(by_name.context["cl"].result_list) == [wider]
    assert list(by_id.context["cl"].result_list) == [baseline]
    assert list(by_text.context["cl"].result_list) == []


def test_run_change_page_read_only(admin_client, dataset):
    run = make_run(dataset, status=RunStatus.RUNNING, name="baseline", worker="celery@cpu-1", step=5)
    url = f"/admin/training/run/{run.pk}/change/"

    page = admin_client.get(url)
    saved = admin_client.post(url, {"name": "renamed", "status": "succeeded", "step": "999", "worker": "forged"})

    assert page.status_code == 200
    assert f"/admin/training/metric/?run__id__exact={run.pk}" in page.content.decode()
    assert saved.status_code == 302
    run.refresh_from_db()
    assert run.name == "renamed"
    assert run.status == RunStatus.RUNNING
    assert run.step == 5
    assert run.worker == "celery@cpu-1"


def test_run_add_disabled(admin_client, db):
    response = admin_client.get("/admin/training/run/add/")

    assert response.status_code == 403


def test_cancel_action(admin_client, dataset):
    queued = make_run(dataset, name="queued")
    running = make_run(dataset, status=RunStatus.RUNNING, name="running", started_at=timezone.now())
    finished = make_run(dataset, status=RunStatus.SUCCEEDED, name="finished", finished_at=timezone.now())
    finished_at = finished.finished_at

    response = admin_client.post("/admin/training/run/", {
        "action": "cancel_selected", "_selected_action": [queued.pk, running.pk, finished.pk],
    }, follow=True)

    assert response.status_code == 200
    assert messages_of(response) == ["2 runs cancelled.", "1 run had already finished and was left as it was."]
    for run in (queued, running):
        run.refresh_from_db()
        assert run.status == RunStatus.CANCELLED
        assert run.finished_at is not None
    finished.refresh_from_db()
    assert finished.status == RunStatus.SUCCEEDED
    assert finished.finished_at == finished_at


def test_cancel_action_single_run(admin_client, dataset):
    queued = make_run(dataset, name="queued")

    response = admin_client.post("/admin/training/run/", {
        "action": "cancel_selected", "_selected_action": [queued.pk],
    }, follow=True)

    assert messages_of(response) == ["1 run cancelled."]
    queued.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED


def test_admin_rejects_team_members(client, owner):
    client.force_login(owner)

    response = client.get("/admin/training/run/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# Metrics


@pytest.fixture
def run_with_metrics(dataset):
    run = make_run(dataset, name="baseline")
    other = make_run(dataset, name="other")
    Metric.objects.bulk_create([
        Metric(run=run, seq=1, key="train/loss", step=1, value=2.5, reported_at=1.0),
        Metric(run=run, seq=2, key="train/loss", step=2, value=None, nonfinite="nan", reported_at=2.0),
        Metric(run=other, seq=1, key="train/loss", step=1, value=9.75, reported_at=1.0),
    ])
    return run


def test_metric_changelist_for_run(admin_client, run_with_metrics):
    response = admin_client.get("/admin/training/metric/", {"run__id__exact": run_with_metrics.pk})

    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [(m.seq, m.display_value) for m in rows] == [(1, 2.5), (2, "nan")]
    assert "9.75" not in response.content.decode()


def test_metric_admin_read_only(admin_client, run_with_metrics):
    metric = run_with_metrics.metrics.get(seq=1)
    url = f"/admin/training/metric/{metric.pk}/change/"

    page = admin_client.get(url)
    saved = admin_client.post(url, {"value": "0.1"})

    assert page.status_code == 200
    assert saved.status_code == 403
    assert admin_client.get("/admin/training/metric/add/").status_code == 403
    assert admin_client.post(f"/admin/training/metric/{metric.pk}/delete/", {"post": "yes"}).status_code == 403
    metric.refresh_from_db()
    assert metric.value == 2.5


# Teams, projects and datasets


def test_team_page_adds_member(admin_client, team, owner, django_user_model):
    newcomer = django_user_model.objects.create_user("nina", "nina@example.com", PASSWORD)
    existing = Membership.objects.get(team=team, user=owner)

    response = admin_client.post(f"/admin/projects/team/{team.pk}/change/", {
        "name": "vision",
        "memberships-TOTAL_FORMS": "2", "memberships-INITIAL_FORMS": "1",
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": existing.pk, "memberships-0-team": team.pk,
        "memberships-0-user": owner.pk, "memberships-0-role": "owner",
        "memberships-1-team": team.pk, "memberships-1-user": newcomer.pk, "memberships-1-role": "viewer",
    })

    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=newcomer).role == Role.VIEWER


def test_project_changelist(admin_client, project):
    response = admin_client.get("/admin/projects/project/")

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [project]


def test_dataset_changelist_shows_size(admin_client, dataset):
    response = admin_client.get("/admin/projects/dataset/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "1.2\xa0MB" in page
    assert "1797" in page


def test_dataset_file_fields_read_only(admin_client, dataset):
    url = f"/admin/projects/dataset/{dataset.pk}/change/"

    page = admin_client.get(url)
    saved = admin_client.post(url, {"name": "digits v2", "file_path": "../elsewhere.npz", "sha256": "0" * 64,
                                    "num_rows": "1"})

    assert page.status_code == 200
    assert "datasets/digits.npz" in page.content.decode()
    assert saved.status_code == 302
    dataset.refresh_from_db()
    assert dataset.name == "digits v2"
    assert dataset.file_path == "datasets/digits.npz"
    assert dataset.sha256 == "ab" * 32
    assert dataset.num_rows == 1797


def test_dataset_add_disabled(admin_client, db):
    assert admin_client.get("/admin/projects/dataset/add/").status_code == 403


def test_token_admin_listed(admin_client, owner):
    from rest_framework.authtoken.models import Token

    Token.objects.create(user=owner)

    response = admin_client.get("/admin/authtoken/tokenproxy/")

    assert response.status_code == 200
    assert "olivia" in response.content.decode()
