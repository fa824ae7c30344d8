"""The tuning engine without Django: search spaces, objectives, samplers, pruning, SQLite storage."""

import multiprocessing
import tempfile

import numpy as np
import optuna
import pytest

from training.engine import parse_config, train
from training.engine.config import ConfigError
from tuning.engine.search import (
    SAMPLERS,
    check_search_setup,
    make_pruner,
    make_sampler,
    open_storage,
    parse_objectives,
    pruning_hook,
)
from tuning.engine.space import SpaceError, apply_params, parse_space, space_to_dict

BASE = parse_config({"hidden_sizes": [64, 32]}).to_dict()
SIX = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
    "hidden_sizes[0]": {"type": "int", "low": 16, "high": 256, "step": 16},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]},
}


def test_space_round_trip_and_apply():
    params = parse_space(SIX, BASE)

    assert space_to_dict(params) == SIX
    config = apply_params(BASE, {"lr": 0.01, "hidden_sizes[0]": 48, "optimizer": "sgd"})
    assert config["hidden_sizes"] == [48, 32]
    assert config["lr"] == 0.01
    assert config["optimizer"] == "sgd"
    assert BASE["hidden_sizes"] == [64, 32], "the base config is left as it was"
    parse_config(config)


@pytest.mark.parametrize("space, field, message", [
    ([], "space", "must be a JSON object that maps parameters to their ranges, got list"),
    ({"lr": 0.1}, "space.lr", "must be an object such as"),
    ({"lr": {"type": "normal", "low": 0, "high": 1}}, "space.lr", "'type' must be one of float, int, categorical"),
    ({"lr": {"type": "float", "low": 1e-3, "high": 0.1, "scale": "log"}}, "space.lr",
     "unknown key 'scale' for a float parameter"),
    ({"lr": {"type": "float", "high": 0.1}}, "space.lr", "'low' is missing"),
    ({"lr": {"type": "float", "low": "a", "high": 0.1}}, "space.lr", "'low' must be a finite number, got 'a'"),
    ({"epochs": {"type": "int", "low": 1.5, "high": 4}}, "space.epochs", "'low' must be an integer"),
    ({"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True, "step": 0.01}}, "space.lr",
     "'step' and a log scale cannot be combined"),
    ({"lr": {"type": "float", "low": -1.0, "high": 0.1}}, "space.lr", "must lie in (0.0, 10.0], got -1.0"),
    ({"optimizer": {"type": "int", "low": 1, "high": 3}}, "space.optimizer", "is not numeric"),
    ({"hidden_sizes": {"type": "int", "low": 8, "high": 64}}, "space.hidden_sizes",
     "is a list; search its elements one by one, e.g. hidden_sizes[0]"),
    ({"lr[0]": {"type": "float", "low": 1e-3, "high": 0.1}}, "space.lr[0]", "only list parameters take an index"),
    ({"batch_size": {"type": "categorical", "choices": []}}, "space.batch_size",
     "'choices' must be a non-empty list"),
    ({"batch_size": {"type": "categorical", "choices": [32, 32]}}, "space.batch_size", "lists a choice twice"),
    ({"batch_size": {"type": "categorical", "choices": [[32]]}}, "space.batch_size",
     "choice [32] is not a number, a string, true, false or null"),
    ({"hidden_sizes[1]": {"type": "int", "low": 0, "high": 64}}, "space.hidden_sizes[1]",
     "must be from 1 to 65536, got 0"),
])
def test_bad_space(space, field, message):
    with pytest.raises(SpaceError) as caught:
        parse_space(space, BASE)

    assert caught.value.field == field
    assert message in caught.value.message


def test_space_error_translates():
    with pytest.raises(SpaceError) as caught:
        parse_space({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, BASE)

    translated = caught.value.translate(lambda template: template.replace("the range is empty", "区间为空"))
    assert translated == "区间为空: low 1.0 is above high 0.1"


def test_objectives_default_and_directions():
    assert [o.to_dict() for o in parse_objectives(None, "classification")] == [
        {"metric": "val/accuracy", "direction": "maximize"}]
    assert [o.to_dict() for o in parse_objectives([], "regression")] == [
        {"metric": "val/rmse", "direction": "minimize"}]
    both = parse_objectives(["val/r2", {"metric": "model/parameters"}], "regression")
    assert [(o.metric, o.direction) for o in both] == [("val/r2", "maximize"), ("model/parameters", "minimize")]
    with pytest.raises(ConfigError, match="objectives\\[1\\]: val/r2 is listed twice"):
        parse_objectives(["val/r2", "val/r2"], "regression")
    with pytest.raises(ConfigError, match="has 4 objectives; at most 3"):
        parse_objectives(["val/loss", "val/accuracy", "model/parameters", "model/latency_ms"], "classification")


def test_search_setup_rules():
    one = parse_objectives(None, "classification")
    two = parse_objectives(["val/accuracy", "model/latency_ms"], "classification")
    check_search_setup("cmaes", "hyperband", one)
    check_search_setup("nsga2", "none", two)
    with pytest.raises(ConfigError, match="sampler: must be one of"):
        check_search_setup("grid", "none", one)
    with pytest.raises(ConfigError, match="pruner: must be one of"):
        check_search_setup("tpe", "threshold", one)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_proposes_valid_configs(name):
    params = parse_space(SIX, BASE)
    distributions = {p.name: p.distribution() for p in params}
    directions = ["maximize", "minimize"] if name == "nsga2" else ["maximize"]
    study = optuna.create_study(directions=directions)
    seen = set()
    for number in range(12):
        study.sampler = make_sampler(name, seed=7, trial_number=number)
        trial = study.ask(distributions)
        parse_config(apply_params(BASE, trial.params))
        seen.add(tuple(sorted(trial.params.items())))
        values = [trial.params["lr"], trial.params["dropout"]]
        study.tell(trial, values if len(directions) == 2 else values[0])

    assert len(seen) == 12, "each ask draws a new point, though every sampler is built anew"


def test_pruning_hook_stops_a_poor_trial():
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", epochs=6))
    for _ in range(5):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=0.99, params={}, distributions={},
            intermediate_values={epoch: 0.99 for epoch in range(1, 7)}))
    trial = study.ask()
    config = parse_config({"epochs": 6, "lr": 1e-6, "hidden_sizes": [8]})

    with tempfile.TemporaryDirectory() as folder:
        result = train(config, x, y, folder, on_epoch=pruning_hook(trial, "val/accuracy"))

    assert result.status == "pruned"
    assert result.epochs_completed < 6
    assert "behind the other trials" in result.reason
    assert sorted(study.trials[-1].intermediate_values) == list(range(1, result.epochs_completed + 1))


def _ask_and_tell(url: str, name: str, count: int) -> int:
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for number in range(count):
        study.sampler = make_sampler("tpe", seed=1, trial_number=number)
        trial = study.ask(distributions)
        trial.report(trial.params["x"], 1)
        study.tell(trial, trial.params["x"])
    return count


def test_sqlite_storage_takes_parallel_writers(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    optuna.create_study(study_name="parallel", storage=open_storage(url), direction="minimize")

    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        done = pool.starmap(_ask_and_tell, [(url, "parallel", 15)] * 4)

    trials = optuna.load_study(study_name="parallel", storage=open_storage(url)).trials
    assert sum(done) == len(trials) == 60
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}


@pytest.mark.parametrize("space, message", [
    ({"conv_channels[0]": {"type": "int", "low": 8, "high": 32}}, "only the CNN reads conv_channels"),
    ({"momentum": {"type": "float", "low": 0.5, "high": 0.95}}, "only SGD reads momentum, and the base config uses adam"),
])
def test_parameter_no_trial_reads(space, message):
    with pytest.raises(SpaceError, match=message):
        parse_space(space, BASE)

    parse_space({**space, "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
                 "model": {"type": "categorical", "choices": ["mlp", "cnn"]}}, BASE)
