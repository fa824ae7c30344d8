"""Objectives, samplers, pruners and the Optuna storage of studies.

Nothing here imports Django: the studio's tasks, the `studio tune` CLI and
bench/hpo.py build their samplers and pruners through these functions, so
the defaults measured by the benchmark are the ones the studio ships.
"""

import logging
import math
import warnings
from dataclasses import dataclass

from training.engine.config import ConfigError, gettext_noop

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "gp", "cmaes", "random", "qmc", "nsga2")
PRUNERS = ("median", "hyperband", "sha", "none")
DIRECTIONS = ("maximize", "minimize")
# Validation metrics per task, each with the direction that is better.
EPOCH_METRICS = {
    "classification": {"val/accuracy": "maximize", "val/loss": "minimize"},
    "regression": {"val/rmse": "minimize", "val/loss": "minimize", "val/r2": "maximize"},
}
# Measured once a trial has trained; they have no per-epoch values to prune on.
MODEL_METRICS = {"model/parameters": "minimize", "model/latency_ms": "minimize"}
MAX_OBJECTIVES = 3
# Samplers that handle several objectives at once.
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "nsga2", "random", "qmc", "gp")

# The defaults the studio ships, chosen with bench/hpo.py (docs/benchmarks.md).
TPE_STARTUP_TRIALS = 5
GP_STARTUP_TRIALS = 8
MEDIAN_STARTUP_TRIALS = 4
MEDIAN_WARMUP_EPOCHS = 1


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str

    def to_dict(self) -> dict:
        return {"metric": self.metric, "direction": self.direction}


def default_objectives(task: str) -> list[Objective]:
    metric = "val/accuracy" if task == "classification" else "val/rmse"
    return [Objective(metric, EPOCH_METRICS[task][metric])]


def parse_objectives(raw, task: str) -> list[Objective]:
    """Validate a list of {"metric", "direction"}; the direction defaults to the metric's better side."""
    if raw in (None, []):
        return default_objectives(task)
    if not isinstance(raw, list):
        raise ConfigError("objectives", gettext_noop("must be a list of objects such as {\"metric\": "
                                                     "\"val/accuracy\", \"direction\": \"maximize\"}"))
    if len(raw) > MAX_OBJECTIVES:
        raise ConfigError("objectives", gettext_noop("has %(count)s objectives; at most %(maximum)s are "
                                                     "allowed"), count=len(raw), maximum=MAX_OBJECTIVES)
    known = {**EPOCH_METRICS[task], **MODEL_METRICS}
    objectives = []
    for index, item in enumerate(raw):
        field = f"objectives[{index}]"
        if isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, dict):
            raise ConfigError(field, gettext_noop("must be an object with 'metric' and 'direction', got "
                                                  "%(value)r"), value=item)
        metric = item.get("metric")
        if metric not in known:
            raise ConfigError(field, gettext_noop("unknown metric %(value)r for a %(task)s dataset; expected "
                                                  "one of %(known)s"),
                              value=metric, task=task, known=", ".join(known))
        direction = item.get("direction") or known[metric]
        if direction not in DIRECTIONS:
            raise ConfigError(field, gettext_noop("direction must be maximize or minimize, got %(value)r"),
                              value=direction)
        if any(o.metric == metric for o in objectives):
            raise ConfigError(field, gettext_noop("%(metric)s is listed twice"), metric=metric)
        objectives.append(Objective(metric, direction))
    return objectives


def check_search_setup(sampler: str, pruner: str, objectives: list[Objective]) -> None:
    """Refuse sampler and pruner choices that cannot work with these objectives."""
    if sampler not in SAMPLERS:
        raise ConfigError("sampler", gettext_noop("must be one of %(choices)s, got %(value)r"),
                          choices=", ".join(SAMPLERS), value=sampler)
    if pruner not in PRUNERS:
        raise ConfigError("pruner", gettext_noop("must be one of %(choices)s, got %(value)r"),
                          choices=", ".join(PRUNERS), value=pruner)
    if len(objectives) > 1 and sampler not in MULTI_OBJECTIVE_SAMPLERS:
        raise ConfigError("sampler", gettext_noop("%(sampler)s optimises one objective; with several, use "
                                                  "tpe, nsga2, gp, random or qmc"), sampler=sampler)
    if pruner != "none":
        if len(objectives) > 1:
            raise ConfigError("pruner", gettext_noop("pruning needs a single objective; choose none"))
        if objectives[0].metric in MODEL_METRICS:
            raise ConfigError("pruner", gettext_noop("%(metric)s has no per-epoch values to prune on; choose "
                                                     "none or a validation metric"),
                              metric=objectives[0].metric)


def make_sampler(name: str, seed: int, trial_number: int = 0):
    """Build the sampler for the ask of trial `trial_number`.

    Each ask builds its sampler anew (the asks happen in whichever process
    saw a trial finish), so the seed moves with the trial number: a fixed
    seed would draw the same random start-up point every time. QMC keeps
    one seed, since its sequence is indexed by the trials in storage.
    """
    import optuna

    moving = (seed * 1_000_003 + trial_number) % 2**32
    if name == "tpe":
        with warnings.catch_warnings():
            # `group` is marked experimental; it samples conditional parameters jointly.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP_TRIALS, multivariate=True, group=True,
                                              constant_liar=True, seed=moving)
    if name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=GP_STARTUP_TRIALS, seed=moving,
                                         warn_independent_sampling=False)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=moving, warn_independent_sampling=False,
                                            independent_sampler=optuna.samplers.RandomSampler(seed=moving))
    if name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=moving, population_size=20)
    return optuna.samplers.RandomSampler(seed=moving)


def make_pruner(name: str, epochs: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=MEDIAN_WARMUP_EPOCHS)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_storage(url: str):
    """Open Optuna's RDB storage at `url`; SQLite writers wait for each other instead of failing.

    SQLite refuses at once a transaction that read and then tries to write
    while another connection writes ("database is locked"), whatever the
    timeout. Beginning every transaction with BEGIN IMMEDIATE takes the
    write lock up front, so parallel trials queue on the busy timeout.
    """
    import optuna
    from sqlalchemy import event

    if not url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    # Connections made before the listeners existed would still begin lazily.
    engine.dispose()
    return storage


def finite_values(values) -> str:
    """Return "" when every value is a finite number, else a reason naming the first that is not."""
    for value in values:
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            return f"objective value {value!r} is not a finite number"
    return ""


def objective_values(summary: dict, objectives: list[Objective]) -> list:
    """Return the trial's values in objective order from its run's final summary (None where missing)."""
    return [summary.get(objective.metric) for objective in objectives]


def pruning_hook(trial, metric: str):
    """Return a training-loop epoch hook that reports `metric` to an Optuna trial and asks its pruner.

    The epoch number is the step Optuna sees, so pruners compare trials
    epoch by epoch. A metric that is not finite is left to the loop, which
    stops the run as diverged.
    """

    def on_epoch(epoch: int, metrics: dict) -> str | None:
        value = metrics.get(metric)
        if value is None or not math.isfinite(value):
            return None
        trial.report(value, epoch)
        if trial.should_prune():
            return f"{metric} {value:.4g} at epoch {epoch} was behind the other trials"
        return None

    return on_epoch
