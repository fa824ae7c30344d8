"""The verbs of studies: create, fill with trials, record results, stop, promote.

There is no long-running driver. A study starts its first `parallel`
trials when it is created; whichever process sees a trial's run finish (a
worker, a cancel, the reaper) records the result in Optuna and asks for the
next trial. The beat task calls fill_study for every running study too, so
a study whose web process died between two steps goes on.

Optuna's storage is written outside Django's transactions: on SQLite a
Django transaction holds the write lock, and Optuna's own connection would
wait for it.
"""

import logging
import math
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from training.engine.config import ConfigError, gettext_noop
from training.models import Run, RunStatus
from training.services import cancel_run, create_run, validate_run_config
from tuning import events
from tuning.engine.search import (Objective, check_search_setup, finite_values, make_pruner, make_sampler,
                                  objective_values, open_storage, parse_objectives, pruning_hook)
from tuning.engine.space import apply_params, parse_space, space_to_dict
from tuning.models import ACTIVE_STUDY_STATES, Study, StudyState, Trial, TrialState

logger = logging.getLogger(__name__)

MAX_TRIALS = 10_000
# Reasons are stored in English, as run errors and logs are, whoever's request wrote them.
STOPPED_REASON = "the study was stopped"
MAX_PARALLEL = 64
_storages: dict[str, object] = {}


def storage_url() -> str:
    """Optuna's storage: the studio's own database unless OPTUNA_STORAGE_URL names another."""
    if settings.OPTUNA_STORAGE_URL:
        return settings.OPTUNA_STORAGE_URL
    db = connections["default"].settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if "postgresql" in db["ENGINE"]:
        from sqlalchemy.engine import URL

        url = URL.create("postgresql+psycopg", username=db.get("USER") or None,
                         password=db.get("PASSWORD") or None, host=db.get("HOST") or None,
                         port=int(db["PORT"]) if db.get("PORT") else None, database=db["NAME"])
        return url.render_as_string(hide_password=False)
    raise RuntimeError(f"no Optuna storage for database engine {db['ENGINE']}; set OPTUNA_STORAGE_URL")


def storage():
    url = storage_url()
    if url not in _storages:
        _storages[url] = open_storage(url)
    return _storages[url]


def close_storages() -> None:
    """Close the pooled connections of Optuna's storages, e.g. before a test database is dropped."""
    for opened in _storages.values():
        opened.engine.dispose()
    _storages.clear()


def load_optuna_study(study: Study, trial_number: int = 0):
    import optuna

    return optuna.load_study(study_name=study.optuna_name, storage=storage(),
                             sampler=make_sampler(study.sampler, study.seed, trial_number),
                             pruner=make_pruner(study.pruner, study.base_config.get("epochs", 1)))


def _int_field(name: str, value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, gettext_noop("must be an integer, got %(value)r"), value=value)
    if not minimum <= value <= maximum:
        raise ConfigError(name, gettext_noop("must be from %(minimum)s to %(maximum)s, got %(value)s"),
                          minimum=minimum, maximum=maximum, value=value)
    return value


def validate_study(dataset, *, base_config: dict, space: dict, objectives=None, sampler: str = "tpe",
                   pruner: str = "median", n_trials: int = 20, parallel: int = 2, timeout_seconds=None,
                   seed: int = 0) -> dict:
    """Check everything a study needs before anything is stored; raises ConfigError naming the field."""
    base = validate_run_config(base_config, dataset)
    params = parse_space(space, base)
    parsed_objectives = parse_objectives(objectives, dataset.task)
    check_search_setup(sampler, pruner, parsed_objectives)
    n_trials = _int_field("n_trials", n_trials, 1, MAX_TRIALS)
    parallel = _int_field("parallel", parallel, 1, MAX_PARALLEL)
    if timeout_seconds in ("", None):
        timeout_seconds = None
    else:
        timeout_seconds = _int_field("timeout_seconds", timeout_seconds, 1, 30 * 24 * 3600)
    seed = _int_field("seed", seed, 0, 2**31 - 1)
    return {"base_config": base, "space": space_to_dict(params),
            "objectives": [o.to_dict() for o in parsed_objectives], "sampler": sampler, "pruner": pruner,
            "n_trials": n_trials, "parallel": parallel, "timeout_seconds": timeout_seconds, "seed": seed}


def create_study(project, dataset, name: str = "", user=None, **options) -> Study:
    """Validate, create the Optuna study and the row, then start the first trials."""
    import optuna

    if dataset.project_id != project.pk:
        raise ConfigError("dataset", _("dataset %(id)s does not belong to project %(project)s")
                          % {"id": dataset.pk, "project": project.name})
    clean = validate_study(dataset, **options)
    optuna_name = f"studio-{uuid.uuid4().hex}"
    directions = [o["direction"] for o in clean["objectives"]]
    optuna.create_study(study_name=optuna_name, storage=storage(), directions=directions)
    try:
        study = Study.objects.create(project=project, dataset=dataset, created_by=user, optuna_name=optuna_name,
                                     name=name or _("study of %(dataset)s") % {"dataset": dataset.name}, **clean)
    except Exception:
        optuna.delete_study(study_name=optuna_name, storage=storage())
        raise
    _start_mlflow_parent(study)
    broadcast(study)
    fill_study(study.pk)
    study.refresh_from_db()
    return study


def _tracker(study: Study):
    from training.engine.tracking import MlflowTracker

    return MlflowTracker(settings.MLFLOW_TRACKING_URI, f"studio/{study.project.team.name}/{study.project.name}")


def _start_mlflow_parent(study: Study) -> None:
    """Open the MLflow run that the trials' runs nest under; a study goes on without MLflow."""
    try:
        tracker = _tracker(study)
        params = {"sampler": study.sampler, "pruner": study.pruner, "n_trials": study.n_trials,
                  "parallel": study.parallel, "objectives": study.objectives, "space": study.space,
                  "dataset": study.dataset.name}
        run_id = tracker.start(study.name, params, {"studio.study_id": str(study.pk)})
    except Exception:
        logger.exception("study %s: MLflow is unavailable; its trials are not nested there", study.pk)
        return
    Study.objects.filter(pk=study.pk).update(mlflow_run_id=run_id, mlflow_experiment_id=tracker.experiment_id)


def _end_mlflow_parent(study: Study) -> None:
    if not study.mlflow_run_id:
        return
    try:
        tracker = _tracker(study)
        tracker.run_id = study.mlflow_run_id
        best = {f"best/{o['metric']}": v for o, v in zip(study.objectives, study.best_values, strict=False)
                if isinstance(v, int | float) and math.isfinite(v)}
        best["trials_finished"] = study.trials_finished
        tracker.log_points([(key, float(value), 0, timezone.now().timestamp()) for key, value in best.items()])
        tracker.end("FINISHED" if study.state == StudyState.FINISHED else "KILLED")
    except Exception:
        logger.exception("study %s: closing its MLflow run failed", study.pk)


def _claim_slot(study_id: int) -> int | None:
    """Take one trial slot if the budget and the parallel limit allow; returns the slot's index or None.

    A compare-and-set on `trials_started` makes each slot index unique even
    when several processes claim at once; the index seeds the trial's sampler.

    NOTE: a process killed between this claim and the creation of the trial's
    row leaves the slot taken, so the study never counts it as finished and
    stays running until it is stopped.
    """
    for _attempt in range(100):
        study = Study.objects.only("state", "trials_started", "trials_finished", "n_trials", "parallel",
                                   "timeout_seconds", "created_at").get(pk=study_id)
        if (study.state != StudyState.RUNNING or study.trials_started >= study.n_trials
                or study.trials_started - study.trials_finished >= study.parallel):
            return None
        if study.deadline and timezone.now() >= study.deadline:
            return None
        slot = study.trials_started
        if Study.objects.filter(pk=study_id, state=StudyState.RUNNING, trials_started=slot).update(
                trials_started=slot + 1):
            return slot
    return None


def fill_study(study_id: int) -> list[Trial]:
    """Start trials until the study's budget or parallel limit is reached; finish the study when all are done."""
    started = []
    while (slot := _claim_slot(study_id)) is not None:
        trial = _start_trial(Study.objects.select_related("project", "dataset").get(pk=study_id), slot)
        if trial is not None:
            started.append(trial)
    maybe_finish(study_id)
    return started


def _start_trial(study: Study, slot: int) -> Trial | None:
    distributions = {param.name: param.distribution() for param in parse_space(study.space, study.base_config)}
    try:
        optuna_study = load_optuna_study(study, slot)
        optuna_trial = optuna_study.ask(distributions)
    except Exception as exc:
        logger.exception("study %s: Optuna could not propose a trial", study.pk)
        _count_finished(study.pk)
        Study.objects.filter(pk=study.pk).update(error=f"Optuna could not propose trial {slot}: {exc}")
        return None

    params = dict(optuna_trial.params)
    trial = Trial.objects.create(study=study, number=optuna_trial.number, optuna_trial_id=optuna_trial._trial_id,
                                 params=params)
    try:
        config = apply_params(study.base_config, params)
        tags = {"studio.study_id": str(study.pk), "studio.trial_number": str(trial.number)}
        if study.mlflow_run_id:
            tags["mlflow.parentRunId"] = study.mlflow_run_id
        with transaction.atomic():
            run = create_run(study.project, study.dataset, config, user=study.created_by,
                             name=f"{study.name} #{trial.number}")
            Run.objects.filter(pk=run.pk).update(mlflow_tags=tags)
            Trial.objects.filter(pk=trial.pk).update(run=run)
    except Exception as exc:
        logger.exception("study %s: trial %s could not start", study.pk, trial.number)
        reason = exc.translate(_) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        _finish_trial(trial.pk, TrialState.FAILED, reason=reason)
        return None
    trial.refresh_from_db()
    logger.info("study %s: trial %s started as run %s with %s", study.pk, trial.number, trial.run_id, params)
    broadcast_trial(trial)
    return trial


def _count_finished(study_id: int) -> None:
    Study.objects.filter(pk=study_id).update(trials_finished=F("trials_finished") + 1)


def _finish_trial(trial_id: int, state: str, values=None, reason: str = "") -> bool:
    """Record a trial's outcome in the studio and in Optuna, once; False when it was already recorded."""
    import optuna

    # The trial's outcome and the study's count change together, or a crash
    # between the two would leave the study waiting for a trial forever.
    with transaction.atomic():
        updated = Trial.objects.filter(pk=trial_id, state=TrialState.RUNNING).update(
            state=state, values=values or [], reason=reason[:2000], finished_at=timezone.now())
        if not updated:
            return False
        trial = Trial.objects.select_related("study").get(pk=trial_id)
        _count_finished(trial.study_id)
    study = trial.study
    optuna_state = {TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
                    TrialState.PRUNED: optuna.trial.TrialState.PRUNED}.get(state, optuna.trial.TrialState.FAIL)
    try:
        optuna_study = load_optuna_study(study)
        if reason and state != TrialState.COMPLETE:
            optuna_study._storage.set_trial_user_attr(trial.optuna_trial_id, "studio_reason", reason[:2000])
        optuna_study.tell(trial.number, values if state == TrialState.COMPLETE else None, state=optuna_state,
                          skip_if_finished=True)
    except Exception:
        logger.exception("study %s: telling Optuna the result of trial %s failed", study.pk, trial.number)
    _update_best(study.pk)
    broadcast_trial(trial)
    return True


def _update_best(study_id: int) -> None:
    study = Study.objects.get(pk=study_id)
    objective = Objective(**study.objectives[0])
    complete = [t for t in study.trials.filter(state=TrialState.COMPLETE) if t.values]
    if not complete:
        return
    pick = max if objective.direction == "maximize" else min
    best = pick(complete, key=lambda t: t.values[0])
    Study.objects.filter(pk=study_id).update(best_trial=best, best_values=best.values)


def trial_result(run: Run, objectives: list[dict]) -> tuple[str, list, str]:
    """Map a finished run to (trial state, objective values, reason)."""
    if run.status == RunStatus.SUCCEEDED:
        values = objective_values(run.summary, [Objective(**o) for o in objectives])
        reason = finite_values(values)
        if reason:
            return TrialState.FAILED, [], reason
        return TrialState.COMPLETE, [float(v) for v in values], ""
    if run.status == RunStatus.PRUNED:
        return TrialState.PRUNED, [], run.error
    if run.status == RunStatus.CANCELLED:
        return TrialState.FAILED, [], "its run was cancelled"
    return TrialState.FAILED, [], run.error or "its run failed"


def on_run_finished(sender, run: Run, **kwargs) -> None:
    """Receiver of training.hooks.run_finished: record a trial's result and start the next trial."""
    trial = Trial.objects.filter(run_id=run.pk).select_related("study").first()
    if trial is None:
        return
    state, values, reason = trial_result(run, trial.study.objectives)
    if trial.study.state == StudyState.STOPPING and run.status == RunStatus.CANCELLED:
        reason = STOPPED_REASON
    _finish_trial(trial.pk, state, values, reason)
    fill_study(trial.study_id)


def maybe_finish(study_id: int) -> bool:
    """Close the study once no trial runs and none may start; True when this call closed it."""
    study = Study.objects.get(pk=study_id)
    if study.state not in ACTIVE_STUDY_STATES or study.trials_started > study.trials_finished:
        return False
    out_of_time = study.deadline is not None and timezone.now() >= study.deadline
    if study.state == StudyState.RUNNING and study.trials_started < study.n_trials and not out_of_time:
        return False
    final = StudyState.STOPPED if study.state == StudyState.STOPPING else StudyState.FINISHED
    updated = Study.objects.filter(pk=study_id, state=study.state, trials_started=F("trials_finished")).update(
        state=final, finished_at=timezone.now())
    if not updated:
        return False
    study.refresh_from_db()
    logger.info("study %s %s after %s trials", study.pk, final, study.trials_finished)
    _end_mlflow_parent(study)
    broadcast(study)
    return True


def stop_study(study: Study) -> bool:
    """Stop starting trials and cancel the running ones; False when the study had already ended."""
    updated = Study.objects.filter(pk=study.pk, state=StudyState.RUNNING).update(state=StudyState.STOPPING)
    if not updated:
        return False
    broadcast(Study.objects.get(pk=study.pk))
    for trial in Trial.objects.filter(study=study, state=TrialState.RUNNING).select_related("run"):
        # Cancelling the run sends run_finished, whose receiver records the trial as failed.
        if trial.run is None or not cancel_run(trial.run):
            _finish_trial(trial.pk, TrialState.FAILED, reason=STOPPED_REASON)
    maybe_finish(study.pk)
    study.refresh_from_db()
    return True


def fill_active_studies() -> None:
    """Beat task body: start trials where slots are free and close studies that are done."""
    for study_id in Study.objects.filter(state__in=ACTIVE_STUDY_STATES).values_list("pk", flat=True):
        try:
            fill_study(study_id)
        except Exception:
            logger.exception("study %s: filling it failed", study_id)


def promote(study: Study, trial: Trial | None = None, epochs: int | None = None, user=None, name: str = "") -> Run:
    """Create a training run with the parameters of `trial`, or of the best trial."""
    trial = trial or study.best_trial
    if trial is not None and trial.study_id != study.pk:
        raise ConfigError("trial", gettext_noop("trial %(number)s belongs to another study"), number=trial.number)
    if trial is None or trial.state != TrialState.COMPLETE:
        raise ConfigError("trial", gettext_noop("no trial of this study has completed, so none can be promoted"))
    config = apply_params(study.base_config, trial.params)
    if epochs is not None:
        config["epochs"] = epochs
    tags = {"studio.study_id": str(study.pk), "studio.promoted_from_trial": str(trial.number)}
    # The run is queued when this transaction commits, so a worker never sees it without its tags.
    with transaction.atomic():
        run = create_run(study.project, study.dataset, config, user=user,
                         name=name or _("%(study)s: trial %(number)s") % {"study": study.name, "number": trial.number})
        Run.objects.filter(pk=run.pk).update(mlflow_tags=tags)
    run.mlflow_tags = tags
    return run


def pareto_trial_numbers(study: Study) -> list[int]:
    """Numbers of the trials on the Pareto front (every complete trial that no other beats on all objectives)."""
    complete = [t for t in study.trials.filter(state=TrialState.COMPLETE) if t.values]
    signs = [1 if o["direction"] == "maximize" else -1 for o in study.objectives]

    def dominates(a, b):
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a.values, b.values, strict=True)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [t.number for t in complete if not any(dominates(o, t) for o in complete if o is not t)]


# Live updates.

def _send(groups: list[str], message: dict) -> None:
    def send():
        try:
            layer = get_channel_layer()
            for group in groups:
                async_to_sync(layer.group_send)(group, message)
        except Exception:
            logger.exception("pushing a study event failed")

    transaction.on_commit(send)


def broadcast(study: Study) -> None:
    study = Study.objects.select_related("best_trial").get(pk=study.pk)
    _send([events.study_group(study.pk), events.project_studies_group(study.project_id)],
          events.study_message(study))


def broadcast_trial(trial: Trial) -> None:
    trial = Trial.objects.select_related("run").get(pk=trial.pk)
    _send([events.study_group(trial.study_id)], events.trial_message(trial))
    broadcast(trial.study)


def study_groups_of_run(run: Run) -> list[str]:
    """training.hooks state-group provider: a trial's run state also goes to its study's page."""
    study_id = Trial.objects.filter(run_id=run.pk).values_list("study_id", flat=True).first()
    return [events.study_group(study_id)] if study_id else []


def pruning_hook_for(run: Run):
    """training.hooks epoch-hook factory: report a trial's epochs to Optuna and ask its pruner."""
    trial = Trial.objects.filter(run_id=run.pk).select_related("study").first()
    if trial is None or trial.study.pruner == "none" or trial.study.multi_objective:
        return None
    import optuna

    optuna_study = load_optuna_study(trial.study)
    optuna_trial = optuna.trial.Trial(optuna_study, trial.optuna_trial_id)
    return pruning_hook(optuna_trial, trial.study.objectives[0]["metric"])

