"""Celery tasks of studies: thin wrappers over tuning.services."""

from celery import shared_task

from tuning import services


@shared_task
def fill_active_studies() -> None:
    services.fill_active_studies()
