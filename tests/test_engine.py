"""The training engine on real data, with no Django and no services."""

import math

import numpy as np
import pytest
import torch

from projects.engine.datasets import load_arrays, write_builtin_npz
from training.engine import NullReporter, parse_config, train
from training.engine.loop import CHECKPOINT_NAME, load_model


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    write_builtin_npz("digits", path)
    x, y, _ = load_arrays(path, "npz")
    return x, y


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "wine.npz"
    write_builtin_npz("wine", path)
    x, y, _ = load_arrays(path, "npz")
    return x, y


def test_cnn_learns_digits(digits, tmp_path):
    config = parse_config({"model": "cnn", "conv_channels": [16, 32], "hidden_sizes": [64], "lr": 0.003,
                           "epochs": 6})
    reporter = NullReporter()

    result = train(config, *digits, tmp_path, reporter)

    assert result.status == "succeeded"
    assert result.summary["val/accuracy"] >= 0.95
    assert len(result.confusion_matrix) == 10
    assert sum(map(sum, result.confusion_matrix)) == 360
    steps = [step for step, _, key, _ in reporter.points if key == "train/loss"]
    assert steps == list(range(1, result.steps + 1))
    assert reporter.info["total_steps"] == result.steps


def test_every_step_reports_the_four_metrics(wine, tmp_path):
    reporter = NullReporter()
    train(parse_config({"epochs": 1, "batch_size": 32}), *wine, tmp_path, reporter)

    keys_at_step_1 = {key for step, _, key, _ in reporter.points if step == 1}
    assert {"train/loss", "train/accuracy", "lr", "train/throughput"} <= keys_at_step_1
    epoch_keys = {key for _, _, key, _ in reporter.points if key.startswith(("val/", "epoch/"))}
    assert epoch_keys == {"epoch/train_loss", "val/loss", "val/accuracy"}


def test_saved_model_reloads_and_predicts(wine, tmp_path):
    result = train(parse_config({"epochs": 3}), *wine, tmp_path)

    model, saved = load_model(result.model_path)
    x = (torch.as_tensor(wine[0][:5]) - saved["x_mean"]) / saved["x_std"]
    assert model(x).shape == (5, 3)
    assert saved["config"]["epochs"] == 3


def test_resume_continues_from_checkpoint(wine, tmp_path):
    config = parse_config({"epochs": 4, "seed": 3})
    straight = train(config, *wine, tmp_path / "straight")

    partial = train(parse_config({"epochs": 4, "seed": 3}), *wine, tmp_path / "resumed",
                    _StopAfterEpochs(2))
    assert partial.status == "cancelled"
    assert (tmp_path / "resumed" / CHECKPOINT_NAME).exists()
    reporter = NullReporter()
    resumed = train(config, *wine, tmp_path / "resumed", reporter)

    assert resumed.status == "succeeded"
    assert resumed.steps == straight.steps
    first_step = min(step for step, _, key, _ in reporter.points if key == "train/loss")
    steps_per_epoch = straight.steps // 4
    assert first_step == 2 * steps_per_epoch + 1
    assert resumed.summary["val/loss"] == pytest.approx(straight.summary["val/loss"], rel=1e-4)


class _StopAfterEpochs(NullReporter):
    """Asks the loop to stop once `epochs` epochs have reported their validation loss."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.finished_epochs = 0

    def report(self, step, epoch, metrics, reported_at):
        super().report(step, epoch, metrics, reported_at)
        if "val/loss" in metrics:
            self.finished_epochs = epoch

    def stop_requested(self):
        return self.finished_epochs >= self.epochs


def test_nan_loss_marks_diverged(digits, tmp_path):
    config = parse_config({"optimizer": "sgd", "lr": 10.0, "momentum": 0.99, "hidden_sizes": [256, 256],
                           "epochs": 2})
    reporter = NullReporter()

    result = train(config, *digits, tmp_path, reporter)

    assert result.status == "diverged"
    assert result.reason.startswith("train/loss became nan at step")
    last_loss = [value for _, _, key, value in reporter.points if key == "train/loss"][-1]
    assert math.isnan(last_loss)


def test_regression_reports_rmse(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 3.0).astype(np.float32)
    config = parse_config({"task": "regression", "epochs": 30, "lr": 0.01})

    result = train(config, x, y, tmp_path)

    assert result.status == "succeeded"
    assert result.summary["val/r2"] > 0.9
    assert result.confusion_matrix == []


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_precisions_train(wine, tmp_path, precision):
    result = train(parse_config({"epochs": 2, "precision": precision}), *wine, tmp_path)
    assert result.status == "succeeded"


def test_gradient_checkpointing_matches_plain(digits, tmp_path):
    base = {"model": "cnn", "epochs": 1, "seed": 1, "hidden_sizes": [32], "conv_channels": [8]}
    plain = train(parse_config(base), *digits, tmp_path / "plain")
    checkpointed = train(parse_config({**base, "gradient_checkpointing": True}), *digits, tmp_path / "ckpt")
    assert checkpointed.summary["val/loss"] == pytest.approx(plain.summary["val/loss"], rel=1e-4)


def test_cnn_rejects_tabular_input(wine, tmp_path):
    with pytest.raises(ValueError, match=r"the CNN needs image-shaped input \(C, H, W\) or \(H, W\), got shape \[13\]"):
        train(parse_config({"model": "cnn"}), *wine, tmp_path)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cnn_trains_on_cuda(digits, tmp_path, precision):
    config = parse_config({"model": "cnn", "epochs": 2, "device": "cuda", "precision": precision})
    reporter = NullReporter()

    result = train(config, *digits, tmp_path, reporter)

    assert reporter.info["device"].startswith("cuda")
    assert result.status == "succeeded"
    assert result.summary["val/accuracy"] > 0.8


def test_cuda_request_without_gpu_fails_clearly(wine, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="device 'cuda' was requested but this worker has no CUDA device"):
        train(parse_config({"device": "cuda"}), *wine, tmp_path)


class _FlushRecorder(NullReporter):
    """Notes, at each flush, which epoch the checkpoint on disk had reached."""

    def __init__(self, checkpoint_path):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.checkpoint_epoch_at_flush = []

    def flush(self):
        saved_epoch = None
        if self.checkpoint_path.exists():
            saved_epoch = torch.load(self.checkpoint_path, weights_only=True)["epoch"]
        self.checkpoint_epoch_at_flush.append(saved_epoch)


def test_points_flushed_before_each_checkpoint(wine, tmp_path):
    reporter = _FlushRecorder(tmp_path / CHECKPOINT_NAME)

    train(parse_config({"epochs": 3}), *wine, tmp_path, reporter)

    assert reporter.checkpoint_epoch_at_flush == [None, 1, 2]
