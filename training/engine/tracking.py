"""MLflow tracking behind a small interface; mlflow is imported only when used.

MlflowClient is used instead of the fluent API because the reporter logs from
its own thread and the fluent API keeps the active run in global state.
"""

import logging
import math

logger = logging.getLogger(__name__)


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment_name: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        experiment = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        )
        self.run_id: str | None = None

    def start(self, run_name: str, params: dict, tags: dict, run_id: str = "") -> str:
        """Start a new MLflow run, or reopen `run_id` when a redelivered run resumes."""
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return self.run_id

    def log_points(self, points: list[tuple[str, float, int, float]]) -> None:
        """Log (key, value, step, unix_seconds) points; non-finite values are skipped."""
        from mlflow.entities import Metric

        metrics = [
            Metric(key, value, int(timestamp * 1000), step)
            for key, value, step, timestamp in points if math.isfinite(value)
        ]
        # MLflow caps one log_batch at 1000 metrics.
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_summary(self, summary: dict) -> None:
        self.log_points([(f"final/{k}", float(v), 0, 0.0) for k, v in summary.items()
                         if isinstance(v, int | float)])

    def log_artifact(self, path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def end(self, status: str) -> None:
        """End the run with an MLflow status: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)
