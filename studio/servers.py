"""Command lines of the studio's servers: Daphne, the Celery worker and the MLflow UI.

`studio up` runs all three under one supervisor; `studio web` and
`studio worker` replace themselves with one of them on a scale-out node.
"""

import os
import sys
from pathlib import Path


def daphne_argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", host.strip("[]"), "-p", str(port), "studio.asgi:application"]


def worker_argv(queues: list[str], concurrency: int, beat: bool, schedule_file: Path | None = None) -> list[str]:
    """Return the Celery worker command line, with the reaper's beat schedule when `beat` is set."""
    argv = [
        sys.executable, "-m", "celery", "-A", "studio", "worker",
        "-Q", ",".join(queues), "-c", str(concurrency),
        # Every worker needs its own node name, or Celery warns of a clash and
        # remote control (inspect, cancel) reaches the wrong one.
        "-n", f"studio-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle", "-l", "INFO",
    ]
    if beat:
        argv.append("--beat")
        if schedule_file is not None:
            argv += ["-s", str(schedule_file)]
    return argv


def mlflow_argv(backend_store_uri: str, host: str, port: int, artifacts_dir: Path) -> list[str]:
    """Return the MLflow tracking server command line (mlflow 3.17), one uvicorn worker."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts_dir),
        "--host", host, "--port", str(port),
        "--workers", "1",
    ]


# mlflow 3.17 starts a job runner with seven huey consumer processes by
# default; they serve GenAI evaluation jobs the studio does not use.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
