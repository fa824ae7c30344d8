"""Celery tasks: thin wrappers over training.runner and training.services."""

import logging

from celery import shared_task
from django.conf import settings

from training import runner, services
from training.models import Run, RunStatus

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=30)
def train_run(self, run_id: int) -> str:
    """Train run `run_id` unless it finished, was cancelled or another live worker holds it."""
    run = services.claim_run(run_id, worker=self.request.hostname or "unknown")
    if run is None:
        status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if status == RunStatus.RUNNING:
            # Another worker holds it, or the one that died has not gone stale
            # yet: look again once the heartbeat could have gone stale.
            raise self.retry(countdown=settings.STALE_AFTER_SECONDS)
        logger.info("run %s is %s; nothing to do", run_id, status)
        return str(status)
    logger.info("run %s: attempt %s started on %s", run_id, run.attempt, run.worker)
    return runner.execute_run(run)


@shared_task
def reap_stale_runs() -> list[int]:
    return services.reap_stale_runs()
