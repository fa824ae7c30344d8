"""The studio half of bench/hpo.py: one study with one worker, then with two, wall times side by side.

Both studies are the same (random sampler, same seed, same trials), so both
sides train the same configs; only the number of worker processes differs.
Each worker is a real Celery worker process with one pool child and one
torch thread, joined through a real Redis, as a worker on another node
would join. Rounds run in ABBA order so that a trend in the machine's load
weighs on both sides alike.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_DB_NUMBER = 14
# Trials of a few seconds each, with large batches, as real trials are: with
# trials of well under a second, or steps of a millisecond, the fixed cost
# of a run (queueing, MLflow) and of each step's metrics would be most of
# what the benchmark measures. The searched parameters leave each trial's
# amount of work the same, so that the study's last trial does not run
# alone on one worker while the other waits.
SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}
BASE_CONFIG = {"model": "mlp", "hidden_sizes": [1536, 512], "batch_size": 256, "optimizer": "adam"}


def _worker_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="studio.settings", STUDIO_HOME=str(home), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING")
    return env


def start_workers(count: int, home: Path, log) -> list[subprocess.Popen]:
    """Start `count` Celery worker processes of one pool child each; return once all are ready."""
    workers = []
    for index in range(count):
        log_path = home / f"worker-{index}-{time.monotonic_ns()}.log"
        with open(log_path, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", "cpu", "-c", "1",
                 "-n", f"bench{index}-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
                cwd=ROOT, env=_worker_env(home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path
        workers.append(process)
    deadline = time.monotonic() + 90
    for process in workers:
        while "ready." not in process.log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start:\n{process.log_path.read_text()[-2000:]}")
            time.sleep(0.1)
    log(f"  {count} worker(s) ready")
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    import signal

    for process in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_study(project, dataset, n_trials: int, epochs: int, timeout: float) -> float:
    """Create a study, wait for it to finish, return its wall time in seconds (database timestamps)."""
    from tuning import services
    from tuning.models import Study, StudyState

    study = services.create_study(
        project, dataset, name=f"bench {time.monotonic_ns()}",
        base_config={**BASE_CONFIG, "epochs": epochs},
        space=SPACE, sampler="random", pruner="none", n_trials=n_trials, parallel=2, seed=11)
    deadline = time.monotonic() + timeout
    while True:
        study = Study.objects.get(pk=study.pk)
        if not study.is_active:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"study {study.pk} did not finish within {timeout:.0f} s")
        time.sleep(0.1)
    if study.state != StudyState.FINISHED or study.trials.filter(state="complete").count() != n_trials:
        raise RuntimeError(f"study {study.pk} ended {study.state} with "
                           f"{list(study.trials.values_list('state', 'reason'))}")
    return (study.finished_at - study.created_at).total_seconds()


def measure(quick: bool, log) -> dict:
    """Return {"one_worker_s", "two_worker_s", "two_worker_time_ratio", ...} from ABBA rounds."""
    from bench.harness import create_digits_project, open_studio

    n_trials, epochs, order = (2, 1, "AB") if quick else (8, 30, "ABBA")
    with tempfile.TemporaryDirectory(prefix="studio-bench-hpo-") as folder:
        home = Path(folder)
        studio = open_studio(home, REDIS_DB_NUMBER)
        try:
            project, dataset = create_digits_project(home)
            times = {"A": [], "B": []}
            for side in order:
                count = 1 if side == "A" else 2
                workers = start_workers(count, home, log)
                try:
                    # Each new pool child pays its first task's imports (MLflow's client): keep that out.
                    run_study(project, dataset, count, 1, 300)
                    seconds = run_study(project, dataset, n_trials, epochs, 900)
                finally:
                    stop_workers(workers)
                times[side].append(seconds)
                log(f"  {count} worker(s): {n_trials} trials in {seconds:.1f} s")
        finally:
            studio.close()
    one, two = sum(times["A"]) / len(times["A"]), sum(times["B"]) / len(times["B"])
    return {"one_worker_s": round(one, 2), "two_worker_s": round(two, 2),
            "two_worker_time_ratio": round(two / one, 3), "studio_trials": n_trials, "studio_epochs": epochs}


if __name__ == "__main__":
    import argparse
    import json

    sys.path.insert(0, str(ROOT))
    from bench.harness import log as stderr_log

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    figures = measure(parser.parse_args().quick, stderr_log)
    print(json.dumps(figures))
