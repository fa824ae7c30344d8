"""Execute one claimed run: load its data, train it, record the outcome."""

import logging
import traceback

from django.conf import settings

from projects.engine.datasets import load_arrays
from training import hooks, services
from training.engine import parse_config, train
from training.engine.tracking import MlflowTracker
from training.models import Run, RunStatus
from training.reporting import RunReporter

logger = logging.getLogger(__name__)


def _open_tracker(run: Run, reporter: RunReporter):
    try:
        tracker = MlflowTracker(settings.MLFLOW_TRACKING_URI, f"studio/{run.project.team.name}/{run.project.name}")
        params = {**run.config, "dataset": run.dataset.name, "dataset_sha256": run.dataset.sha256}
        tags = {"studio.run_id": str(run.pk), "studio.project": run.project.name, **run.mlflow_tags}
        run_id = tracker.start(str(run), params, tags, run_id=run.mlflow_run_id)
    except Exception as exc:
        logger.exception("run %s: MLflow is unavailable; training goes on without it", run.pk)
        reporter.log(f"MLflow unavailable, not recording this run there: {exc}")
        return None
    Run.objects.filter(pk=run.pk).update(mlflow_run_id=run_id, mlflow_experiment_id=tracker.experiment_id)
    return tracker


def execute_run(run: Run) -> str:
    """Train a run that this worker has claimed; returns its final status."""
    reporter = RunReporter(run)
    resuming = run.attempt > 1
    reporter.open(resume_after_step=run.step if resuming else -1)
    tracker = _open_tracker(run, reporter)
    reporter.tracker = tracker
    if resuming:
        reporter.log(f"attempt {run.attempt} on {run.worker}")

    try:
        config = parse_config(run.config)
        dataset = run.dataset
        x, y, _ = load_arrays(dataset.absolute_path, dataset.format, dataset.target_column, dataset.task)
        result = train(config, x, y, run.checkpoint_dir(), reporter, on_epoch=hooks.epoch_hook(run))
    except Exception as exc:
        reporter.log("failed:\n" + traceback.format_exc())
        reporter.close()
        if tracker:
            _safe(tracker.end, "FAILED")
        logger.exception("run %s failed", run.pk)
        services.finish_run(run.pk, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        return RunStatus.FAILED

    # Every reported point reaches the database before the run is marked finished.
    reporter.close()
    if result.status == "succeeded":
        if tracker:
            _safe(tracker.log_summary, result.summary)
            _safe(tracker.log_artifact, result.model_path)
            _safe(tracker.end, "FINISHED")
        services.finish_run(run.pk, RunStatus.SUCCEEDED, summary=result.summary,
                            confusion_matrix=result.confusion_matrix)
        return RunStatus.SUCCEEDED
    if result.status == "diverged":
        if tracker:
            _safe(tracker.set_tag, "studio.diverged", "true")
            _safe(tracker.end, "FAILED")
        services.finish_run(run.pk, RunStatus.FAILED, diverged=True, error=f"diverged: {result.reason}")
        return RunStatus.FAILED
    if result.status == "pruned":
        if tracker:
            _safe(tracker.set_tag, "studio.pruned", result.reason)
            _safe(tracker.end, "KILLED")
        services.finish_run(run.pk, RunStatus.PRUNED, error=f"pruned: {result.reason}")
        return RunStatus.PRUNED
    if tracker:
        _safe(tracker.end, "KILLED")
    services.finish_run(run.pk, RunStatus.CANCELLED)
    return RunStatus.CANCELLED


def _safe(function, *args):
    try:
        function(*args)
    except Exception:
        logger.exception("MLflow call %s failed", function.__name__)
