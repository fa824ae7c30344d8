"""The training loop: reads top to bottom, one epoch after another.

`train()` resumes from `checkpoint_dir/checkpoint.pt` when it exists, so a
run redelivered after its worker died goes on from its last finished epoch.
"""

import logging
import math
import os
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.engine.config import RunConfig
from training.engine.nets import build_model
from training.engine.reporting import NullReporter, Reporter

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"


@dataclass
class TrainingResult:
    # "succeeded", "cancelled", "diverged" or "pruned".
    status: str
    epochs_completed: int
    steps: int
    summary: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    model_path: Path | None = None
    reason: str = ""


@dataclass
class PreparedData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    input_shape: list[int]
    num_outputs: int
    # Normalisation fitted on the training split, kept in the model file for inference.
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: float = 0.0
    y_std: float = 1.0


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but this worker has no CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def split_indices(y: np.ndarray, config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into train and validation, stratified by class where every class has two examples."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(y))
    stratify = None
    if config.task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2:
            stratify = y
    train_idx, val_idx = train_test_split(indices, test_size=config.val_split, random_state=config.seed,
                                          stratify=stratify)
    return train_idx, val_idx


def prepare_data(x: np.ndarray, y: np.ndarray, config: RunConfig) -> PreparedData:
    """Split, normalise with training statistics and convert to tensors."""
    if len(x) != len(y):
        raise ValueError(f"X has {len(x)} examples but y has {len(y)}")
    if len(x) < 4:
        raise ValueError(f"a run needs at least 4 examples, the dataset has {len(x)}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None, :, :]
    train_idx, val_idx = split_indices(y, config)

    # Images are normalised per channel, tables per feature.
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    mean = x[train_idx].mean(axis=axes, keepdims=True)
    std = x[train_idx].std(axis=axes, keepdims=True)
    std[std < 1e-8] = 1.0
    x = (x - mean) / std

    if config.task == "classification":
        labels = torch.as_tensor(np.asarray(y, dtype=np.int64))
        num_outputs = int(labels.max().item()) + 1
        y_mean, y_std = 0.0, 1.0
    else:
        target = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
        y_mean = float(target[train_idx].mean())
        y_std = float(target[train_idx].std()) or 1.0
        labels = torch.as_tensor((target - y_mean) / y_std)
        num_outputs = target.shape[1]

    features = torch.as_tensor(x)
    return PreparedData(
        train_x=features[train_idx], train_y=labels[train_idx], val_x=features[val_idx], val_y=labels[val_idx],
        input_shape=list(x.shape[1:]), num_outputs=num_outputs,
        x_mean=torch.as_tensor(mean[0]), x_std=torch.as_tensor(std[0]), y_mean=y_mean, y_std=y_std,
    )


def make_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer, config: RunConfig, total_steps: int):
    """Return a per-step learning-rate scheduler."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        # Divide the rate by 10 after each third of the run.
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def _loss_fn(config: RunConfig):
    return nn.CrossEntropyLoss() if config.task == "classification" else nn.MSELoss()


@torch.no_grad()
def evaluate(model, data: PreparedData, config: RunConfig, device, batch_size: int = 1024):
    """Return (metrics, predictions) on the validation split."""
    model.eval()
    loss_fn = _loss_fn(config)
    total_loss, outputs = 0.0, []
    for start in range(0, len(data.val_x), batch_size):
        xb = data.val_x[start:start + batch_size].to(device)
        yb = data.val_y[start:start + batch_size].to(device)
        with _autocast(device, config.precision):
            out = model(xb)
        total_loss += loss_fn(out.float(), yb).item() * len(xb)
        outputs.append(out.float().cpu())
    predictions = torch.cat(outputs)
    metrics = {"val/loss": total_loss / len(data.val_x)}
    if config.task == "classification":
        metrics["val/accuracy"] = (predictions.argmax(1) == data.val_y).float().mean().item()
    else:
        error = (predictions - data.val_y) * data.y_std
        metrics["val/rmse"] = error.pow(2).mean().sqrt().item()
        variance = (data.val_y * data.y_std).var(unbiased=False).item()
        metrics["val/r2"] = 1.0 - error.pow(2).mean().item() / variance if variance > 0 else 0.0
    return metrics, predictions


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _model_args(config: RunConfig, data: PreparedData) -> dict:
    return {
        "model": config.model, "input_shape": data.input_shape, "num_outputs": data.num_outputs,
        "hidden_sizes": config.hidden_sizes, "conv_channels": config.conv_channels, "dropout": config.dropout,
    }


def load_model(path: Path) -> tuple[nn.Module, dict]:
    """Load a model written by train(); returns the network in eval mode and the whole file's contents."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(gradient_checkpointing=False, **saved["model_args"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved


def _finite(value: float) -> bool:
    return math.isfinite(value)


def measure_latency_ms(model: nn.Module, input_shape: list[int], repeats: int = 30) -> float:
    """Return the median time in milliseconds of one single-example forward pass on the CPU."""
    model = model.to("cpu").eval()
    example = torch.zeros(1, *input_shape)
    timings = []
    with torch.inference_mode():
        for index in range(repeats + 5):
            started = time.perf_counter()
            model(example)
            if index >= 5:
                timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1000)


# Called after each epoch's validation with (epoch, epoch metrics); a returned
# string stops training there as "pruned", with the string as the reason.
EpochHook = Callable[[int, dict[str, float]], str | None]


def train(config: RunConfig, x: np.ndarray, y: np.ndarray, checkpoint_dir: Path,
          reporter: Reporter | None = None, on_epoch: EpochHook | None = None) -> TrainingResult:
    """Train a network on (x, y) as `config` says, reporting every step and epoch to `reporter`.

    `on_epoch` lets a hyper-parameter search prune the run after an epoch.
    """
    reporter = reporter or NullReporter()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    model_path = checkpoint_dir / MODEL_NAME
    phase_started = time.perf_counter()
    timings: dict[str, float] = {}

    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    data = prepare_data(x, y, config)
    model = build_model(config.model, data.input_shape, data.num_outputs, config.hidden_sizes,
                        config.conv_channels, config.dropout, config.gradient_checkpointing).to(device)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(data.train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = make_scheduler(optimizer, config, total_steps)
    # Loss scaling keeps fp16 gradients from underflowing; it is only needed on CUDA.
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")
    loss_fn = _loss_fn(config)

    start_epoch, step = 1, 0
    best_val_loss, best_epoch, epochs_without_improvement = math.inf, 0, 0
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        start_epoch, step = saved["epoch"] + 1, saved["step"]
        best_val_loss, best_epoch = saved["best_val_loss"], saved["best_epoch"]
        epochs_without_improvement = saved["epochs_without_improvement"]
        reporter.log(f"resumed from the checkpoint of epoch {saved['epoch']} (step {step})")

    parameters = sum(p.numel() for p in model.parameters())
    reporter.start({
        "device": str(device), "parameters": parameters, "train_examples": len(data.train_x),
        "val_examples": len(data.val_x), "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "total_epochs": config.epochs, "start_epoch": start_epoch, "start_step": step,
    })
    reporter.log(f"training {config.model} ({parameters:,} parameters) on {device}: "
                 f"{len(data.train_x)} training and {len(data.val_x)} validation examples")
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    timings["prepare"] = time.perf_counter() - phase_started
    phase_started = time.perf_counter()

    status, reason, epoch = "succeeded", "", start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        order = order.to(device)
        epoch_loss, epoch_examples = 0.0, 0
        for batch_start in range(0, len(order), config.batch_size):
            if reporter.stop_requested():
                return TrainingResult("cancelled", epoch - 1, step, reason="stop requested")
            step_started = time.perf_counter()
            index = order[batch_start:batch_start + config.batch_size]
            xb, yb = train_x[index], train_y[index]
            with _autocast(device, config.precision):
                out = model(xb)
                loss = loss_fn(out.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1

            # .item() waits for the GPU: one sync per step, the price of per-step curves and NaN checks.
            loss_value = loss.item()
            metrics = {"train/loss": loss_value, "lr": lr}
            if config.task == "classification":
                metrics["train/accuracy"] = (out.argmax(1) == yb).float().mean().item()
            metrics["train/throughput"] = len(xb) / max(time.perf_counter() - step_started, 1e-9)
            reporter.report(step, epoch, metrics, time.time())
            reporter.progress(epoch, step)
            if not _finite(loss_value):
                reason = f"train/loss became {loss_value} at step {step} (epoch {epoch})"
                reporter.log(f"diverged: {reason}")
                return TrainingResult("diverged", epoch - 1, step, reason=reason)
            epoch_loss += loss_value * len(xb)
            epoch_examples += len(xb)

        val_metrics, _ = evaluate(model, data, config, device)
        epoch_metrics = {"epoch/train_loss": epoch_loss / epoch_examples, **val_metrics}
        reporter.report(step, epoch, epoch_metrics, time.time())
        bad = [key for key, value in epoch_metrics.items() if not _finite(value)]
        if bad:
            reason = f"{bad[0]} became {epoch_metrics[bad[0]]} at epoch {epoch}"
            reporter.log(f"diverged: {reason}")
            return TrainingResult("diverged", epoch - 1, step, reason=reason)

        improved = val_metrics["val/loss"] < best_val_loss
        if improved:
            best_val_loss, best_epoch, epochs_without_improvement = val_metrics["val/loss"], epoch, 0
            _save_atomic({
                "state_dict": model.state_dict(), "model_args": _model_args(config, data),
                "x_mean": data.x_mean, "x_std": data.x_std, "y_mean": data.y_mean, "y_std": data.y_std,
                "config": config.to_dict(), "epoch": epoch, "val_metrics": val_metrics,
            }, model_path)
        else:
            epochs_without_improvement += 1
        # A worker killed after this checkpoint resumes after it, so the points before it must be stored first.
        reporter.flush()
        _save_atomic({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best_val_loss": best_val_loss,
            "best_epoch": best_epoch, "epochs_without_improvement": epochs_without_improvement,
            "config": config.to_dict(),
        }, checkpoint_path)
        summary_line = ", ".join(f"{key} {value:.4g}" for key, value in epoch_metrics.items())
        reporter.log(f"epoch {epoch}/{config.epochs}: {summary_line}")
        if on_epoch is not None:
            pruned = on_epoch(epoch, epoch_metrics)
            if pruned:
                reporter.log(f"pruned: {pruned}")
                return TrainingResult("pruned", epoch, step, reason=pruned)
        if config.early_stopping_patience and epochs_without_improvement >= config.early_stopping_patience:
            reporter.log(f"early stopping: no better val/loss for {epochs_without_improvement} epochs")
            break
    timings["train"] = time.perf_counter() - phase_started
    phase_started = time.perf_counter()

    # The final figures and the confusion matrix come from the best epoch's weights.
    best_model, saved = load_model(model_path)
    best_model.to(device)
    val_metrics, predictions = evaluate(best_model, data, config, device)
    summary = {**val_metrics, "best_epoch": saved["epoch"], "epochs": epoch, "steps": step,
               "model/parameters": parameters,
               "model/latency_ms": measure_latency_ms(best_model, data.input_shape)}
    matrix = []
    if config.task == "classification":
        from sklearn.metrics import confusion_matrix

        labels = list(range(data.num_outputs))
        matrix = confusion_matrix(data.val_y.numpy(), predictions.argmax(1).numpy(), labels=labels).tolist()
    timings["evaluate"] = time.perf_counter() - phase_started
    reporter.log("finished: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items()))
    return TrainingResult(status, epoch, step, summary, matrix, model_path, reason)
