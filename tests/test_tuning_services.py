"""How studies survive lost workers, time budgets and a lost step, with real Optuna storage.

No worker runs here: the in-memory broker keeps trial runs queued, and each
test moves runs as a worker, the reaper or the clock would.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.test_api_runs import make_dataset
from training import services as run_services
from training.models import Run, RunStatus
from tuning import services
from tuning.models import Study, StudyState, TrialState

pytestmark = pytest.mark.django_db(transaction=True)
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


@pytest.fixture
def digits(project):
    return make_dataset(project, "digits")


def new_study(project, digits, owner, **options):
    options = {"base_config": {"epochs": 2}, "space": SPACE, "n_trials": 3, "parallel": 1, "pruner": "none",
               **options}
    return services.create_study(project, digits, user=owner, **options)


def test_trial_of_a_dead_worker_fails_after_the_last_attempt(project, digits, owner, settings):
    study = new_study(project, digits, owner)
    run = study.trials.get().run
    stale = timezone.now() - timedelta(seconds=settings.STALE_AFTER_SECONDS + 5)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=stale, worker="gone@node",
                                         attempt=settings.MAX_ATTEMPTS)

    assert run_services.reap_stale_runs() == [run.pk]

    trial = study.trials.get(number=0)
    assert trial.state == TrialState.FAILED
    assert "worker gone@node stopped responding" in trial.reason
    study.refresh_from_db()
    assert study.trials_finished == 1
    assert study.trials_started == 2
    assert study.trials.get(number=1).run.status == RunStatus.QUEUED


def test_trial_of_a_dead_worker_is_retried_first(project, digits, owner, settings):
    study = new_study(project, digits, owner)
    run = study.trials.get().run
    stale = timezone.now() - timedelta(seconds=settings.STALE_AFTER_SECONDS + 5)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=stale, attempt=1)

    run_services.reap_stale_runs()

    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
    assert study.trials.get().state == TrialState.RUNNING


def test_no_trial_starts_after_the_time_budget(project, digits, owner):
    study = new_study(project, digits, owner, timeout_seconds=60, n_trials=10)
    Study.objects.filter(pk=study.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    run = study.trials.get().run
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)

    run_services.finish_run(run.pk, RunStatus.SUCCEEDED, summary={"val/accuracy": 0.8})

    study.refresh_from_db()
    assert study.state == StudyState.FINISHED
    assert study.trials_started == study.trials_finished == 1
    assert study.best_values == [0.8]


def test_beat_starts_trials_a_lost_step_left_unstarted(project, digits, owner):
    study = new_study(project, digits, owner, parallel=2)
    first = study.trials.get(number=0)
    # Trial 0 is recorded, but the process died before it asked for the next trial.
    Run.objects.filter(pk=first.run_id).update(status=RunStatus.CANCELLED)
    services._finish_trial(first.pk, TrialState.FAILED, reason="lost")
    assert Study.objects.get(pk=study.pk).trials_started == 2

    services.fill_active_studies()

    study.refresh_from_db()
    assert study.trials_started == 3
    assert study.trials_finished == 1
    assert list(study.trials.filter(state=TrialState.RUNNING).values_list("number", flat=True)) == [1, 2]


def test_cancelling_a_trial_run_fails_the_trial_and_goes_on(project, digits, owner):
    study = new_study(project, digits, owner)

    assert run_services.cancel_run(study.trials.get().run)

    trial = study.trials.get(number=0)
    assert trial.state == TrialState.FAILED
    assert trial.reason == "its run was cancelled"
    assert study.trials.get(number=1).state == TrialState.RUNNING


def test_claims_never_pass_the_budget(project, digits, owner):
    study = new_study(project, digits, owner, n_trials=4, parallel=4)

    for _ in range(3):
        services.fill_study(study.pk)

    study.refresh_from_db()
    assert study.trials_started == study.trials.count() == 4
    assert sorted(study.trials.values_list("number", flat=True)) == [0, 1, 2, 3]
