"""Log metric points to an MLflow run from a child process.

MLflow's SQLAlchemy store spends about 65 µs of Python per metric in
log_batch (mlflow 3.17.2, SQLite store, measured on a 2-core machine). Done
in the training process, that time is taken from the training loop through
the GIL, so a RunReporter whose run reports many points hands them to a
MlflowWriterProcess instead.

Protocol: the child writes "ready" to its stdout once MLflow is imported
and the run is found, which takes a few seconds. The parent then writes one
JSON line per batch to the child's stdin, a list of [key, value, step,
unix_seconds] points, and closes stdin when it is done. The child logs each
batch and exits at the end of its input: 0 when every batch was logged, 1
when some failed (each failure is logged to stderr).
Run it as `python -m training.mlflow_writer TRACKING_URI RUN_ID`.
"""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# MLflow rejects a log_batch call with more than 1000 metrics.
MLFLOW_BATCH_LIMIT = 1000
ROOT = Path(__file__).resolve().parent.parent


class MlflowWriterProcess:
    """The parent's end of the child process; log_points never blocks the caller."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.run_id = run_id
        env = dict(os.environ)
        # MLflow 3.17 sends usage telemetry to config.mlflow-telemetry.io unless
        # MLFLOW_DISABLE_TELEMETRY is set. This child has no use for it, but an
        # explicit setting in the environment is kept.
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "training.mlflow_writer", tracking_uri, run_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=env,
        )
        self._started_at = time.monotonic()
        self._ready = False
        os.set_blocking(self._process.stdout.fileno(), False)
        self._stdin_fd = self._process.stdin.fileno()
        # A full pipe (the child is busy) must not stall the reporter thread:
        # unwritten bytes wait here for the next call.
        os.set_blocking(self._stdin_fd, False)
        self._unwritten = bytearray()

    def ready(self) -> bool:
        """Return whether the child has imported MLflow and found the run."""
        if not self._ready and not self._process.stdout.closed:
            try:
                self._ready = b"ready" in (os.read(self._process.stdout.fileno(), 64) or b"")
            except BlockingIOError:
                pass
        return self._ready

    def alive(self) -> bool:
        return self._process.poll() is None

    def seconds_since_start(self) -> float:
        return time.monotonic() - self._started_at

    def kill(self) -> None:
        """Stop the child at once; meant for a child that was never handed any points."""
        self._process.kill()
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()

    def log_points(self, points: list[tuple[str, float, int, float]]) -> None:
        """Queue (key, value, step, unix_seconds) points; raises BrokenPipeError once the child has died."""
        if points:
            self._unwritten += (json.dumps(points, allow_nan=False) + "\n").encode()
        self._write_some()

    def _write_some(self) -> None:
        while self._unwritten:
            try:
                written = os.write(self._stdin_fd, self._unwritten)
            except BlockingIOError:
                return
            del self._unwritten[:written]

    def close(self, timeout: float) -> int:
        """Hand over what is left, wait up to `timeout` seconds for the child to log it; returns its exit code."""
        try:
            os.set_blocking(self._stdin_fd, True)
            self._write_some()
            self._process.stdin.close()
        except BrokenPipeError:
            logger.error("MLflow writer for run %s died; %d bytes of points were not logged",
                         self.run_id, len(self._unwritten))
        try:
            code = self._process.wait(timeout=timeout)
            self._process.stdout.close()
            return code
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            logger.error("MLflow writer for run %s did not finish within %.0f s and was killed", self.run_id, timeout)
            return -9


def _log_batch(client, run_id: str, points: list) -> None:
    from mlflow.entities import Metric

    metrics = [Metric(key, value, int(timestamp * 1000), step) for key, value, step, timestamp in points]
    for start in range(0, len(metrics), MLFLOW_BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[start:start + MLFLOW_BATCH_LIMIT])


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tracking_uri, run_id = argv
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.get_run(run_id)
    print("ready", flush=True)
    failed = 0
    for line_number, line in enumerate(sys.stdin, start=1):
        points = json.loads(line)
        started = time.monotonic()
        try:
            _log_batch(client, run_id, points)
        except Exception:
            failed += 1
            logger.exception("logging batch %d (%d points) to MLflow run %s failed", line_number, len(points), run_id)
            continue
        logger.debug("logged %d points in %.3f s", len(points), time.monotonic() - started)
    return 1 if failed else 0


if __name__ == "__main__":
    exit_code = main(sys.argv[1:])
    logging.shutdown()
    # Every batch is committed by now. A normal exit runs MLflow's and
    # SQLAlchemy's exit handlers, which take most of a second here, and the
    # parent's close() waits for this process to end.
    os._exit(exit_code)
