"""Overhead of the studio's training engine and live reporting over a plain PyTorch loop.

Trains the same CNN on the same batches twice per round: once in a plain
loop written here, and once through training.engine.train with a real
RunReporter. The reporter stores every step's metrics in the database,
pushes them to a Redis channel layer and logs them to MLflow (SQLite store).
Rounds run in ABBA order (bare, engine, engine, bare, ...) so that drift in
the machine's speed falls on both sides. The last stdout line is one JSON
object:

    {"ratio": engine/bare, "bare_seconds": ..., "engine_seconds": ..., "steps": ..., "points_stored": ...}

where the seconds are the median of one training's wall time on each side
and the ratio is theirs; "ratio_of_totals" compares the sums.

Usage: python -m bench.overhead [--quick] [--rounds N] [--threads N] [--epochs N] ...
"""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    create_digits_project, log, open_studio, others_cpu_seconds, runqueue_wait_seconds, start_run,
)

# Redis database number for this benchmark on the machine's server; it is flushed before and after.
REDIS_DB_NUMBER = 12


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds in all, to check that the script works; the ratio means nothing then")
    parser.add_argument("--rounds", type=int, default=2, help="bare/engine pairs, run in ABBA order (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both loops (default 1)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per training (default 20)")
    parser.add_argument("--repeat", type=int, default=8,
                        help="times the 1,797 digits are repeated to make longer epochs (default 8)")
    parser.add_argument("--channels", default="32,64", help="CNN convolution channels (default 32,64)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step (default 64)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.repeat, args.channels = 1, 1, 1, "8"
    return args


def load_digits(repeat: int):
    import numpy as np
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = np.tile(digits.images.astype(np.float32), (repeat, 1, 1))
    y = np.tile(digits.target, repeat)
    return x, y


def train_bare(config, x, y) -> int:
    """Train as a plain PyTorch loop would, on the engine's model, optimizer and batch order; returns the steps."""
    import torch

    from training.engine.loop import make_optimizer, prepare_data
    from training.engine.nets import build_model

    torch.manual_seed(config.seed)
    data = prepare_data(x, y, config)
    model = build_model(config.model, data.input_shape, data.num_outputs, config.hidden_sizes,
                        config.conv_channels, config.dropout, config.gradient_checkpointing)
    optimizer = make_optimizer(model, config)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(data.train_x), generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss = loss_fn(model(data.train_x[index]), data.train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1

        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(data.val_x), data.val_y).item()
        if not math.isfinite(val_loss):
            raise RuntimeError(f"the bare loop diverged at epoch {epoch}")
    return steps


class EngineTrainer:
    """Trains through training.engine.train with a real RunReporter and MLflow tracker, as the runner does."""

    def __init__(self, studio, project, dataset):
        self.studio = studio
        self.project = project
        self.dataset = dataset
        self.rounds = 0

    def train(self, config, x, y) -> dict:
        from django.conf import settings

        from training import services
        from training.engine import train
        from training.engine.tracking import MlflowTracker
        from training.models import Metric, RunStatus
        from training.reporting import RunReporter

        self.rounds += 1
        run = start_run(self.project, self.dataset, config.to_dict(), name=f"overhead {self.rounds}")
        tracker = MlflowTracker(settings.MLFLOW_TRACKING_URI, "bench/overhead")
        tracker.start(str(run), config.to_dict(), {"studio.run_id": str(run.pk)})
        reporter = RunReporter(run, tracker=tracker).open()

        waited = runqueue_wait_seconds()
        others = others_cpu_seconds()
        started = time.perf_counter()
        result = train(config, x, y, run.checkpoint_dir(), reporter)
        trained = time.perf_counter()
        reporter.close()
        seconds = time.perf_counter() - started
        close_seconds = time.perf_counter() - trained
        cpu_wait = runqueue_wait_seconds() - waited
        others = others_cpu_seconds() - others

        tracker.end("FINISHED")
        services.finish_run(run.pk, RunStatus.SUCCEEDED, summary=result.summary)
        if result.status != "succeeded":
            raise RuntimeError(f"the engine's training ended {result.status}: {result.reason}")
        stored = Metric.objects.filter(run_id=run.pk).count()
        mlflow_losses = len(tracker.client.get_metric_history(tracker.run_id, "train/loss"))
        return {"seconds": seconds, "close_seconds": close_seconds, "cpu_wait": cpu_wait, "others_cpu": others,
                "steps": result.steps,
                "points_stored": stored, "mlflow_loss_points": mlflow_losses}


def expected_points(steps: int, epochs: int) -> int:
    # Per step: train/loss, lr, train/accuracy, train/throughput; per epoch: epoch/train_loss, val/loss, val/accuracy.
    return steps * 4 + epochs * 3


def measure(args) -> dict:
    import torch

    from training.engine.config import parse_config

    torch.set_num_threads(args.threads)
    channels = [int(part) for part in args.channels.split(",")]
    config = parse_config({"model": "cnn", "conv_channels": channels, "batch_size": args.batch_size,
                           "epochs": args.epochs, "device": "cpu"})
    x, y = load_digits(args.repeat)

    with tempfile.TemporaryDirectory(prefix="studio-bench-overhead-") as home:
        studio = open_studio(Path(home), REDIS_DB_NUMBER)
        try:
            project, dataset = create_digits_project(Path(home))
            engine = EngineTrainer(studio, project, dataset)
            bare_seconds, bare_waits, bare_others, engine_runs = [], [], [], []

            # Untimed: the first training in a process pays for torch's lazy set-up.
            train_bare(parse_config({**config.to_dict(), "epochs": 1}), x[:1000], y[:1000])

            def run_bare():
                waited = runqueue_wait_seconds()
                others = others_cpu_seconds()
                started = time.perf_counter()
                steps = train_bare(config, x, y)
                bare_seconds.append(time.perf_counter() - started)
                bare_waits.append(runqueue_wait_seconds() - waited)
                bare_others.append(others_cpu_seconds() - others)
                log(f"bare:   {bare_seconds[-1]:.2f} s, {steps} steps, {bare_waits[-1]:.2f} s waiting for a CPU, "
                    f"other processes used {bare_others[-1]:.1f} s of CPU")
                return steps

            def run_engine():
                engine_runs.append(engine.train(config, x, y))
                measured = engine_runs[-1]
                log(f"engine: {measured['seconds']:.2f} s ({measured['close_seconds']:.3f} s flushing at the end), "
                    f"{measured['steps']} steps, {measured['points_stored']} points stored, "
                    f"{measured['cpu_wait']:.2f} s waiting for a CPU, other processes used "
                    f"{measured['others_cpu']:.1f} s of CPU")

            for round_number in range(args.rounds):
                if round_number % 2 == 0:
                    steps = run_bare()
                    run_engine()
                else:
                    run_engine()
                    steps = run_bare()
        finally:
            studio.close()

    expected = expected_points(steps, args.epochs)
    wrong_counts = [run["points_stored"] for run in engine_runs if run["points_stored"] != expected]
    if wrong_counts:
        raise RuntimeError(f"expected {expected} points stored per engine run, got {wrong_counts}")
    engine_seconds = [run["seconds"] for run in engine_runs]
    bare_total, engine_total = sum(bare_seconds), sum(engine_seconds)
    bare_busy = bare_total - sum(bare_waits)
    engine_busy = engine_total - sum(run["cpu_wait"] for run in engine_runs)
    # Medians, because on a shared machine one training in a few can be hit
    # by another process; the ratio of totals is given too.
    bare_median, engine_median = statistics.median(bare_seconds), statistics.median(engine_seconds)
    return {
        "ratio": round(engine_median / bare_median, 4),
        "bare_seconds": round(bare_median, 3),
        "engine_seconds": round(engine_median, 3),
        "steps": steps,
        "points_stored": engine_runs[-1]["points_stored"],
        "rounds": args.rounds,
        "ratio_of_totals": round(engine_total / bare_total, 4),
        "bare_each": [round(s, 3) for s in bare_seconds],
        "engine_each": [round(seconds, 3) for seconds in engine_seconds],
        "engine_close_seconds": [round(run["close_seconds"], 3) for run in engine_runs],
        "mlflow_loss_points": engine_runs[-1]["mlflow_loss_points"],
        "ms_per_step_bare": round(1000 * bare_total / (steps * args.rounds), 3),
        # Wall time minus the time the training thread waited, runnable, for a
        # CPU that other processes held: an estimate for a quiet machine.
        "ratio_without_cpu_wait": round(engine_busy / bare_busy, 4),
        "cpu_wait_seconds": {"bare": round(sum(bare_waits), 3),
                             "engine": round(sum(run["cpu_wait"] for run in engine_runs), 3)},
        # CPU seconds that other processes (other users' jobs, but also the
        # machine's Redis serving this benchmark) used during each training.
        "others_cpu_seconds": {"bare": [round(value, 1) for value in bare_others],
                               "engine": [round(run["others_cpu"], 1) for run in engine_runs]},
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "torch_threads": args.threads,
        "quick": args.quick,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    result = measure(args)
    if args.quick:
        result["note"] = "quick mode checks that the benchmark runs; its ratio is not meaningful"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
