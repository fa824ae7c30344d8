"""The verbs that change a run's state. Views, the API, the admin, the CLI and
tasks call these; nothing else writes Run.status.

Every transition is a conditional update (filter on the expected status, then
check the row count), so a worker finishing a run never overwrites an
operator's cancel, and a duplicate delivery of a task never runs twice.
"""

import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from training import events, hooks
from training.engine.config import ConfigError, parse_config
from training.engine.nets import image_shape
from training.models import ACTIVE_STATUSES, Run, RunStatus

logger = logging.getLogger(__name__)


def validate_run_config(raw: dict, dataset) -> dict:
    """Check a config against the dataset it will train on; return it complete with defaults."""
    raw = dict(raw or {})
    raw.setdefault("task", dataset.task)
    config = parse_config(raw)
    if config.task != dataset.task:
        raise ConfigError("task", _("must match the dataset's task %(task)s, got %(given)s")
                          % {"task": dataset.task, "given": config.task})
    if config.model == "cnn" and image_shape(dataset.input_shape) is None:
        raise ConfigError("model", _("the CNN needs an image dataset; %(name)s has examples of shape %(shape)s, "
                                     "use the MLP") % {"name": dataset.name, "shape": dataset.input_shape})
    return config.to_dict()


def queue_for(config: dict) -> str:
    """Return the Celery queue for a config: runs that ask for CUDA go to workers started with `--queues gpu`."""
    return "gpu" if config.get("device") == "cuda" else "cpu"


def create_run(project, dataset, config: dict, user=None, name: str = "") -> Run:
    """Validate and store a run, and queue it once the transaction commits."""
    if dataset.project_id != project.pk:
        raise ConfigError("dataset", _("dataset %(id)s does not belong to project %(project)s")
                          % {"id": dataset.pk, "project": project.name})
    complete = validate_run_config(config, dataset)
    with transaction.atomic():
        run = Run.objects.create(project=project, dataset=dataset, config=complete, created_by=user,
                                 name=name, queue=queue_for(complete), total_epochs=complete["epochs"])
        transaction.on_commit(lambda: enqueue(run.pk))
        broadcast_state(run)
    return run


def enqueue(run_id: int) -> None:
    from training.tasks import train_run

    run = Run.objects.get(pk=run_id)
    result = train_run.apply_async(args=[run_id], queue=run.queue)
    Run.objects.filter(pk=run_id).update(celery_task_id=result.id)


def cancel_run(run: Run) -> bool:
    """Cancel a queued or running run; returns False when it had already finished."""
    updated = Run.objects.filter(pk=run.pk, status__in=ACTIVE_STATUSES).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now())
    if updated:
        logger.info("run %s cancelled", run.pk)
        run.refresh_from_db()
        broadcast_state(run)
        announce_finished(run)
    return bool(updated)


def claim_run(run_id: int, worker: str) -> Run | None:
    """Mark a run running for this worker; None when it is not queued nor abandoned by a dead worker."""
    stale_before = timezone.now() - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    claimable = Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before)
    now = timezone.now()
    updated = Run.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING, started_at=Coalesce(F("started_at"), now), heartbeat_at=now,
        worker=worker, attempt=F("attempt") + 1, error="")
    if not updated:
        return None
    run = Run.objects.get(pk=run_id)
    broadcast_state(run)
    return run


def finish_run(run_id: int, status: str, **fields) -> bool:
    """Move a running run to a final status; False when it was no longer running (cancelled meanwhile)."""
    updated = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), **fields)
    run = Run.objects.get(pk=run_id)
    if not updated and fields:
        # A cancelled run still keeps what it produced.
        keep = {k: v for k, v in fields.items() if k in ("summary", "confusion_matrix", "mlflow_run_id")}
        if keep:
            Run.objects.filter(pk=run_id).update(**keep)
    broadcast_state(run)
    if updated:
        announce_finished(run)
    return bool(updated)


def reap_stale_runs() -> list[int]:
    """Re-queue runs whose worker stopped beating, or fail them after MAX_ATTEMPTS; returns their ids."""
    stale_before = timezone.now() - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    reaped = []
    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before):
        if run.attempt < settings.MAX_ATTEMPTS:
            updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.QUEUED)
            if updated:
                logger.warning("run %s: worker %s stopped beating; re-queued (attempt %s)",
                               run.pk, run.worker, run.attempt)
                enqueue(run.pk)
        else:
            updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.FAILED, finished_at=timezone.now(),
                error=_("worker %(worker)s stopped responding and %(attempts)s attempts were used")
                % {"worker": run.worker, "attempts": run.attempt})
            if updated:
                logger.error("run %s: failed after %s attempts; worker %s lost", run.pk, run.attempt, run.worker)
        if updated:
            reaped.append(run.pk)
            run.refresh_from_db()
            broadcast_state(run)
            if run.status == RunStatus.FAILED:
                announce_finished(run)
    return reaped


def announce_finished(run: Run) -> None:
    """Tell other apps (a study waiting on its trial) that the run reached a final status.

    A receiver that fails is logged and does not undo the run's own outcome.
    """
    for receiver, result in hooks.run_finished.send_robust(sender=Run, run=run):
        if isinstance(result, Exception):
            logger.error("run %s: %s failed after the run finished", run.pk, getattr(receiver, "__name__", receiver),
                         exc_info=result)


def broadcast_state(run: Run) -> None:
    """Send the run's state to its page and its project's run list after the transaction commits."""
    message = events.state_message(run)
    groups = [events.run_group(run.pk), events.project_runs_group(run.project_id), *hooks.extra_state_groups(run)]

    def send():
        layer = get_channel_layer()
        try:
            for group in groups:
                async_to_sync(layer.group_send)(group, message)
        except Exception:
            logger.exception("run %s: pushing its state failed", run.pk)

    transaction.on_commit(send)
