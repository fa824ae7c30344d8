"""Runs trained by a real Celery worker process through a real Redis."""

import os
import signal
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import wait_until
from training import services
from training.models import Metric, Run, RunStatus

pytestmark = pytest.mark.integration

CNN = {"model": "cnn", "conv_channels": [16, 32], "hidden_sizes": [64], "lr": 0.003}


def _finished(run_id):
    run = Run.objects.get(pk=run_id)
    return run if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) else None


def _train_loss_steps(run):
    return list(Metric.objects.filter(run=run, key="train/loss").order_by("step").values_list("step", flat=True))


def test_run_trains_and_records_everything(celery_worker_process, project, digits_dataset, owner):
    run = services.create_run(project, digits_dataset, {**CNN, "epochs": 3}, owner, name="digits cnn")

    run = wait_until(lambda: _finished(run.pk), 180, "the run to finish")

    assert run.status == RunStatus.SUCCEEDED, run.error + run.log
    assert run.attempt == 1
    assert run.summary["val/accuracy"] >= 0.9
    assert run.step == run.total_steps == _train_loss_steps(run)[-1]
    assert _train_loss_steps(run) == list(range(1, run.total_steps + 1))
    seqs = list(Metric.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1))
    assert len(run.confusion_matrix) == 10
    assert "epoch 3/3" in run.log
    assert (run.checkpoint_dir() / "checkpoint.pt").exists()

    from django.conf import settings
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    recorded = client.get_run(run.mlflow_run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params["lr"] == "0.003"
    history = client.get_metric_history(run.mlflow_run_id, "train/loss")
    assert len(history) == run.total_steps
    assert [a.path for a in client.list_artifacts(run.mlflow_run_id)] == ["model.pt"]


def test_cancel_stops_mid_epoch(celery_worker_process, project, digits_dataset, owner):
    # Batches of 4 make an epoch of 360 steps, about a second on a CPU: long
    # enough that stopping at the next epoch's end would show.
    run = services.create_run(project, digits_dataset, {**CNN, "epochs": 50, "batch_size": 4}, owner)
    wait_until(lambda: Run.objects.get(pk=run.pk).step >= 5, 120, "the first steps")

    assert services.cancel_run(run) is True
    run = wait_until(lambda: Run.objects.get(pk=run.pk).worker and _quiet(run.pk), 30, "training to stop")

    assert run.status == RunStatus.CANCELLED
    steps_per_epoch = run.total_steps // 50
    # The worker sees the cancel within about a second, not after the run's 50 epochs.
    assert run.step < 3 * steps_per_epoch
    assert services.cancel_run(run) is False


def _quiet(run_id, seconds=1.5):
    """Return the run once its step has not moved for `seconds`."""
    import time

    before = Run.objects.get(pk=run_id).step
    time.sleep(seconds)
    run = Run.objects.get(pk=run_id)
    return run if run.step == before else None


def test_killed_worker_child_resumes_without_duplicates(start_worker, project, digits_dataset, owner):
    worker = start_worker(STUDIO_STALE_AFTER_SECONDS=3, STUDIO_HEARTBEAT_SECONDS=1)
    run = services.create_run(project, digits_dataset, {**CNN, "epochs": 4, "batch_size": 16}, owner)
    wait_until(lambda: Metric.objects.filter(run=run, key="val/loss", epoch=2).exists(), 120, "epoch 2")

    children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGKILL)
    run = wait_until(lambda: _finished(run.pk), 180, "the resumed run to finish")

    assert run.status == RunStatus.SUCCEEDED, run.error + run.log
    assert run.attempt == 2
    assert "resumed from the checkpoint of epoch" in run.log
    assert _train_loss_steps(run) == list(range(1, run.total_steps + 1))
    val_epochs = list(Metric.objects.filter(run=run, key="val/loss").order_by("seq").values_list("epoch", flat=True))
    assert val_epochs == [1, 2, 3, 4]


def test_nan_loss_fails_run_as_diverged(celery_worker_process, project, digits_dataset, owner):
    config = {"optimizer": "sgd", "lr": 10.0, "momentum": 0.99, "hidden_sizes": [256, 256], "epochs": 2}
    run = services.create_run(project, digits_dataset, config, owner)

    run = wait_until(lambda: _finished(run.pk), 120, "the run to finish")

    assert run.status == RunStatus.FAILED
    assert run.diverged is True
    assert run.error.startswith("diverged: train/loss became nan at step ")
    nan_point = Metric.objects.get(run=run, key="train/loss", nonfinite="nan")
    assert nan_point.value is None
    assert nan_point.step == run.step


@pytest.mark.django_db
def test_reaper_requeues_then_fails_stale_runs(project, digits_dataset, settings):
    settings.STALE_AFTER_SECONDS = 10
    settings.MAX_ATTEMPTS = 2
    old = timezone.now() - timedelta(seconds=30)
    fresh = timezone.now()
    requeued = Run.objects.create(project=project, dataset=digits_dataset, status=RunStatus.RUNNING,
                                  heartbeat_at=old, attempt=1, worker="lost@node1")
    exhausted = Run.objects.create(project=project, dataset=digits_dataset, status=RunStatus.RUNNING,
                                   heartbeat_at=old, attempt=2, worker="lost@node2")
    alive = Run.objects.create(project=project, dataset=digits_dataset, status=RunStatus.RUNNING,
                               heartbeat_at=fresh, attempt=1, worker="alive@node3")

    reaped = services.reap_stale_runs()

    assert sorted(reaped) == sorted([requeued.pk, exhausted.pk])
    requeued.refresh_from_db()
    exhausted.refresh_from_db()
    alive.refresh_from_db()
    assert requeued.status == RunStatus.QUEUED
    assert exhausted.status == RunStatus.FAILED
    assert exhausted.error == "worker lost@node2 stopped responding and 2 attempts were used"
    assert alive.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_claim_refuses_run_held_by_live_worker(project, digits_dataset):
    run = Run.objects.create(project=project, dataset=digits_dataset, status=RunStatus.RUNNING,
                             heartbeat_at=timezone.now(), attempt=1, worker="a@node")

    assert services.claim_run(run.pk, "b@node") is None
    run.refresh_from_db()
    assert run.worker == "a@node"
    assert run.attempt == 1
