"""Live events: the one place that builds what is sent to the channel layer.

Each stream has one function that builds its payload; consumers forward the
payload to the browser as JSON unchanged. Values that are not finite travel
as null with the `nonfinite` field naming them, so every payload is valid JSON.
"""


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def project_runs_group(project_id: int) -> str:
    return f"project-{project_id}-runs"


def metric_point(seq: int, key: str, step: int, epoch: int, value, nonfinite: str, reported_at: float) -> dict:
    return {"seq": seq, "key": key, "step": step, "epoch": epoch, "value": value, "nonfinite": nonfinite,
            "t": reported_at}


def metrics_message(points: list[dict]) -> dict:
    """A batch of stored metric points of one run, in seq order."""
    return {"type": "run.metrics", "points": points}


def run_state(run) -> dict:
    """The part of a run that pages show and update live."""
    return {
        "id": run.pk,
        "name": str(run),
        "status": run.status,
        "status_display": str(run.get_status_display()),
        "epoch": run.epoch,
        "total_epochs": run.total_epochs,
        "step": run.step,
        "total_steps": run.total_steps,
        "progress": run.progress,
        "eta_seconds": run.eta_seconds,
        "duration_seconds": run.duration_seconds,
        "device": run.device,
        "diverged": run.diverged,
        "error": run.error,
        "summary": run.summary,
        "main_metric_key": run.main_metric_key,
        "main_metric": run.main_metric,
        "mlflow_run_id": run.mlflow_run_id,
        "last_seq": run.last_seq,
    }


def state_message(run) -> dict:
    return {"type": "run.state", "run": run_state(run)}
