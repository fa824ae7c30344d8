"""Hyper-parameter search: trials the studio's samplers need to reach a target, and epochs its pruner saves.

Every study trains the MLP on scikit-learn's digits through the functions
the studio ships. tuning.engine.space parses the search space.
tuning.engine.search builds the pruner and, for every ask, a new sampler
(`make_sampler(name, seed, trial_number)`). training.engine.loop.train
trains each trial with `pruning_hook` as its epoch hook. Studies live in
Optuna's in-memory storage, which is faster than the studio's RDB storage
and holds the same trials. The run config's training seed stays fixed,
so a given config always scores the same, and only the study seed varies.
With one study seed, make_sampler gives TPE, GP and random search the same
random start-up trials, so the samplers tie on a seed where random search
reaches the target within those trials.

1. Samplers. For each study seed, TPE, GP and random search each run the
   same trial budget without a pruner. A study's trials-to-target is the
   number of the first trial whose val/accuracy reaches --target, or
   budget + 1 when no trial does. `tpe_trials_ratio` is the median over
   seeds of TPE's trials-to-target divided by random search's median;
   `gp_trials_ratio` is the same for GP.
2. Pruning. TPE runs again with the median pruner, on the same seeds and
   budget. `pruning_epochs_saved` is 1 - (epochs trained with the pruner) /
   (epochs trained without it), summed over the seeds. The best values
   with and without the pruner are given too, and so is the unpruned
   study's best over the same number of epochs as the pruned study.

3. Workers. bench/hpo_workers.py runs one study through the studio (its
   services, a real Redis and real Celery worker processes, one torch thread
   each) with one worker and then with two, in ABBA order.
   `two_worker_time_ratio` is the two-worker wall time over the one-worker
   wall time. --no-studio leaves this part out.

Progress and a table go to stderr. The last stdout line is one JSON object
with the figures.

Usage: python bench/hpo.py [--quick] [--seeds N] [--budget N] [--epochs N] [--target ACCURACY] ...
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import log  # noqa: E402

# The run config every trial starts from, with the values that SPACE searches overridden per trial.
BASE_CONFIG = {"model": "mlp", "hidden_sizes": [128, 64], "device": "cpu", "seed": 0}
# Wide ranges on purpose: most random configs are poor in few epochs, so a
# sampler that learns where the good region is can find it much sooner.
SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 0.1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "hidden_sizes[0]": {"type": "int", "low": 8, "high": 512, "log": True},
    "hidden_sizes[1]": {"type": "int", "low": 8, "high": 256, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.6},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam", "adamw"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
}
SAMPLERS = ("tpe", "gp", "random")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="about a minute in all, to check that every path runs (the figures mean nothing then)")
    parser.add_argument("--seeds", type=int, default=8, help="study seeds per sampler and pruner (default 8)")
    parser.add_argument("--first-seed", type=int, default=0, help="first study seed (default 0)")
    parser.add_argument("--budget", type=int, default=60, help="trials per study (default 60)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    # About 3% of random configs reach 350 of the 360 validation digits (estimated from 1,200 random trials),
    # so random search needs about 20 to 30 trials on median.
    parser.add_argument("--target", type=float, default=0.972,
                        help="val/accuracy a study must reach (default 0.972, i.e. 350 of the 360 validation "
                             "digits)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--no-studio", action="store_true",
                        help="skip the part that runs a study through the studio with one and two workers")
    args = parser.parse_args(argv)
    if args.quick:
        # Budget 10 is above the start-up trials of TPE, GP and the median pruner, so their models run too.
        args.seeds, args.budget, args.epochs, args.target = 2, 10, 2, 0.9
    if args.seeds < 1 or args.budget < 1 or args.epochs < 1:
        parser.error("--seeds, --budget and --epochs must be at least 1")
    return args


@dataclass
class StudyRecord:
    sampler: str
    pruner: str
    seed: int
    # Per trial, in order: the objective value, or None for a pruned or failed trial.
    values: list = field(default_factory=list)
    states: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    seconds: float = 0.0
    # Time spent in ask and tell, which is where the sampler's model is fitted.
    sampler_seconds: float = 0.0

    def best(self) -> float | None:
        finished = [value for value in self.values if value is not None]
        return max(finished) if finished else None

    def best_within_epochs(self, epochs: int) -> float | None:
        """Return the best value among the first trials that together trained at most `epochs` epochs."""
        best, trained = None, 0
        for value, trial_epochs in zip(self.values, self.epochs):
            trained += trial_epochs
            if trained > epochs:
                break
            if value is not None and (best is None or value > best):
                best = value
        return best

    def trials_to_target(self, target: float) -> int:
        """Return the 1-based number of the first trial that reached `target`, or len(values) + 1."""
        for number, value in enumerate(self.values, start=1):
            if value is not None and value >= target:
                return number
        return len(self.values) + 1


def load_digits():
    import numpy as np
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return digits.data.astype(np.float32), digits.target


def run_study(sampler_name: str, pruner_name: str, seed: int, args, data) -> StudyRecord:
    """Run one study as the studio runs its trials: a new sampler per ask, then train, then tell."""
    import optuna

    from training.engine.config import parse_config
    from training.engine.loop import train
    from tuning.engine.search import (
        finite_values, make_pruner, make_sampler, objective_values, parse_objectives, pruning_hook,
    )
    from tuning.engine.space import apply_params, parse_space

    x, y = data
    base = parse_config({**BASE_CONFIG, "epochs": args.epochs}).to_dict()
    params = parse_space(SPACE, base)
    distributions = {param.name: param.distribution() for param in params}
    objectives = parse_objectives(None, "classification")
    metric = objectives[0].metric
    if objectives[0].direction != "maximize":
        raise RuntimeError(f"expected {metric} to be maximised, got {objectives[0].direction}")

    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner_name, args.epochs))
    record = StudyRecord(sampler_name, pruner_name, seed)
    started = time.perf_counter()
    for number in range(args.budget):
        ask_started = time.perf_counter()
        study.sampler = make_sampler(sampler_name, seed, number)
        trial = study.ask(distributions)
        record.sampler_seconds += time.perf_counter() - ask_started

        config = parse_config(apply_params(base, trial.params))
        with tempfile.TemporaryDirectory(prefix="studio-bench-hpo-") as checkpoint_dir:
            result = train(config, x, y, Path(checkpoint_dir), on_epoch=pruning_hook(trial, metric))

        tell_started = time.perf_counter()
        if result.status == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            value = None
        else:
            values = objective_values(result.summary, objectives)
            if result.status == "succeeded" and not finite_values(values):
                study.tell(trial, values)
                value = values[0]
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                value = None
        record.sampler_seconds += time.perf_counter() - tell_started
        record.values.append(value)
        record.states.append(result.status)
        record.epochs.append(result.epochs_completed)
    record.seconds = time.perf_counter() - started
    return record


def format_trials(trials: int, budget: int) -> str:
    return f">{budget}" if trials > budget else str(trials)


def print_table(records: dict, args) -> None:
    """Log one row per sampler and pruner: trials-to-target per seed, their median, best values and epochs."""
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    log(f"\ntrials until val/accuracy >= {args.target} (budget {args.budget}; >{args.budget}: never reached)")
    header = f"{'sampler':<8} {'pruner':<7} " + " ".join(f"{'s' + str(seed):>4}" for seed in seeds)
    log(header + f" {'median':>7} {'best median':>11} {'epochs':>7} {'pruned':>6} {'s/trial':>7} {'ask+tell':>8}")
    for (sampler, pruner), studies in records.items():
        trials = [study.trials_to_target(args.target) for study in studies]
        bests = [study.best() for study in studies if study.best() is not None]
        best = f"{statistics.median(bests):.4f}" if bests else "-"
        epochs = sum(sum(study.epochs) for study in studies)
        pruned = sum(study.states.count("pruned") for study in studies)
        count = sum(len(study.values) for study in studies)
        per_trial = sum(study.seconds for study in studies) / count
        sampler_share = sum(study.sampler_seconds for study in studies) / sum(study.seconds for study in studies)
        cells = " ".join(f"{format_trials(value, args.budget):>4}" for value in trials)
        log(f"{sampler:<8} {pruner:<7} {cells} {statistics.median(trials):>7g} {best:>11} {epochs:>7} "
            f"{pruned:>6} {per_trial:>7.3f} {sampler_share:>7.0%}")


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def run_studies(args) -> tuple[dict, float]:
    """Run every sampler and the pruned TPE on every seed, seed by seed.

    Returns the records by (sampler, pruner) and the wall time of all the studies in seconds.
    """
    import optuna
    import torch

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_digits()
    plan = [(sampler, "none") for sampler in SAMPLERS] + [("tpe", "median")]
    records = {key: [] for key in plan}
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for sampler, pruner in plan:
            study = run_study(sampler, pruner, seed, args, data)
            records[(sampler, pruner)].append(study)
            best = study.best()
            log(f"seed {seed} {sampler:<6} pruner {pruner:<6}: "
                f"target at trial {format_trials(study.trials_to_target(args.target), args.budget)}, "
                f"best {best if best is None else round(best, 4)}, {sum(study.epochs)} epochs, "
                f"{study.states.count('pruned')} pruned, {study.seconds:.1f} s "
                f"({study.sampler_seconds:.1f} s in ask and tell)")
    return records, time.perf_counter() - started


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summarize(records: dict, args) -> dict:
    """Compute the benchmark's figures from the studies' records."""

    def trials_each(key) -> list[int]:
        return [study.trials_to_target(args.target) for study in records[key]]

    def median_best(key) -> float | None:
        bests = [study.best() for study in records[key] if study.best() is not None]
        return rounded(statistics.median(bests)) if bests else None

    medians = {key: statistics.median(trials_each(key)) for key in records}
    unpruned, pruned = records[("tpe", "none")], records[("tpe", "median")]
    epochs_unpruned = sum(sum(study.epochs) for study in unpruned)
    epochs_pruned = sum(sum(study.epochs) for study in pruned)
    names = {key: f"{key[0]}_{key[1]}" for key in records}
    return {
        "tpe_trials_ratio": ratio(medians[("tpe", "none")], medians[("random", "none")]),
        "gp_trials_ratio": ratio(medians[("gp", "none")], medians[("random", "none")]),
        "pruning_epochs_saved": round(1 - epochs_pruned / epochs_unpruned, 4),
        "random_median_trials": medians[("random", "none")],
        "tpe_median_trials": medians[("tpe", "none")],
        "gp_median_trials": medians[("gp", "none")],
        "tpe_pruned_median_trials": medians[("tpe", "median")],
        "trials_to_target": {names[key]: trials_each(key) for key in records},
        # Studies that never reached the target, each counted as budget + 1 trials.
        "never_reached": {names[key]: sum(trials > args.budget for trials in trials_each(key)) for key in records},
        "best_value_median": {names[key]: median_best(key) for key in records},
        "best_value_unpruned": [rounded(study.best()) for study in unpruned],
        "best_value_pruned": [rounded(study.best()) for study in pruned],
        # The unpruned study's best over its first trials that trained no more epochs than the pruned study.
        "best_value_unpruned_same_epochs": [rounded(without.best_within_epochs(sum(with_pruner.epochs)))
                                            for without, with_pruner in zip(unpruned, pruned)],
        "epochs_unpruned": epochs_unpruned,
        "epochs_pruned": epochs_pruned,
        "trials_pruned": sum(study.states.count("pruned") for study in pruned),
        "target": args.target,
        "budget": args.budget,
        "seeds": args.seeds,
        "epochs_per_trial": args.epochs,
    }


def shipped_defaults() -> dict:
    from tuning.engine import search

    return {name: getattr(search, name) for name in
            ("TPE_STARTUP_TRIALS", "GP_STARTUP_TRIALS", "MEDIAN_STARTUP_TRIALS", "MEDIAN_WARMUP_EPOCHS")}


def main(argv=None) -> int:
    args = parse_args(argv)
    records, seconds = run_studies(args)
    print_table(records, args)
    figures = summarize(records, args)
    figures["search_seconds"] = round(seconds, 1)
    figures["two_worker_time_ratio"] = None
    if not args.no_studio:
        from bench.hpo_workers import measure

        log("one study through the studio, with one worker and then two")
        figures.update(measure(args.quick, log))
    figures["defaults"] = shipped_defaults()
    figures["load_average"] = [round(value, 2) for value in os.getloadavg()]
    figures["torch_threads"] = args.threads
    figures["quick"] = args.quick
    if args.quick:
        figures["note"] = "quick mode checks that the benchmark runs; its figures are not meaningful"
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
