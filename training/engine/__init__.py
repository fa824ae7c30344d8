"""Training engine: plain PyTorch with no Django import.

The Celery task, the CLI, the benchmarks and the tests all call `train()`;
everything the studio adds (database, live stream, MLflow) arrives through a
Reporter passed in by the caller.
"""

from training.engine.config import ConfigError, RunConfig, parse_config
from training.engine.loop import TrainingResult, train
from training.engine.reporting import NullReporter, Reporter

__all__ = ["ConfigError", "NullReporter", "Reporter", "RunConfig", "TrainingResult", "parse_config", "train"]
