"""The run configuration and its validation."""

from dataclasses import asdict, dataclass, field, fields

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "onecycle")
PRECISIONS = ("fp32", "bf16", "fp16")
TASKS = ("classification", "regression")


def gettext_noop(message: str) -> str:
    """Mark `message` for Django's makemessages without importing Django; callers translate it."""
    return message


class ConfigError(ValueError):
    """A config value is invalid; `field` names it so forms and the API can point at it.

    `template` and `params` keep the message before substitution, so that the
    web layer can show it in the user's language through `translate`.
    """

    def __init__(self, field: str, template: str, **params):
        self.field = field
        self.template = template
        self.params = params
        # A template without params is a finished message and may contain a literal %.
        self.message = template % params if params else template
        super().__init__(f"{field}: {self.message}")

    def translate(self, gettext) -> str:
        return gettext(self.template) % self.params if self.params else gettext(self.template)


@dataclass
class RunConfig:
    # Network: "mlp" for any input, "cnn" for image-shaped input (C, H, W).
    model: str = "mlp"
    # Widths of the MLP's hidden layers, or of the CNN's fully connected head.
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    # Output channels of each CNN convolution block; ignored by the MLP.
    conv_channels: list[int] = field(default_factory=lambda: [16, 32])
    dropout: float = 0.0
    task: str = "classification"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    # SGD momentum; ignored by Adam and AdamW.
    momentum: float = 0.9
    schedule: str = "constant"
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    # Fraction of the examples held out for validation, stratified by class.
    val_split: float = 0.2
    # Stop after this many epochs without a better validation loss; 0 turns it off.
    early_stopping_patience: int = 0
    # Autocast precision; fp16 uses a gradient scaler on CUDA.
    precision: str = "fp32"
    # Recompute activations in the backward pass to save memory.
    gradient_checkpointing: bool = False
    # "auto" takes CUDA when the worker has it, else the CPU.
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, gettext_noop("must be an integer, got %(value)r"), value=value)
    if value < minimum or (maximum is not None and value > maximum):
        if maximum is None:
            raise ConfigError(name, gettext_noop("must be at least %(minimum)s, got %(value)s"),
                              minimum=minimum, value=value)
        raise ConfigError(name, gettext_noop("must be from %(minimum)s to %(maximum)s, got %(value)s"),
                          minimum=minimum, maximum=maximum, value=value)
    return value


def _check_float(name, value, low, high, low_inclusive=True, high_inclusive=True):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, gettext_noop("must be a number, got %(value)r"), value=value)
    value = float(value)
    too_low = value < low if low_inclusive else value <= low
    too_high = value > high if high_inclusive else value >= high
    if too_low or too_high or value != value:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ConfigError(name, gettext_noop("must lie in %(interval)s, got %(value)s"),
                          interval=f"{left}{low}, {high}{right}", value=value)
    return value


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(name, gettext_noop("must be one of %(choices)s, got %(value)r"),
                          choices=", ".join(choices), value=value)
    return value


def _check_sizes(name, value, maximum):
    if not isinstance(value, list) or not value:
        raise ConfigError(name, gettext_noop("must be a non-empty list of integers, got %(value)r"), value=value)
    for index, size in enumerate(value):
        _check_int(f"{name}[{index}]", size, 1, maximum)
    return list(value)


def parse_config(raw: dict) -> RunConfig:
    """Build a RunConfig from user input, raising ConfigError on the first bad field."""
    if not isinstance(raw, dict):
        raise ConfigError("config", gettext_noop("must be a JSON object, got %(type)s"), type=type(raw).__name__)
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(unknown[0], gettext_noop("unknown parameter; expected one of %(known)s"),
                          known=", ".join(sorted(known)))

    config = RunConfig(**raw)
    _check_choice("model", config.model, MODELS)
    _check_sizes("hidden_sizes", config.hidden_sizes, 65536)
    _check_sizes("conv_channels", config.conv_channels, 4096)
    if len(config.conv_channels) > 6:
        raise ConfigError("conv_channels", gettext_noop("must have at most 6 blocks, got %(count)s"),
                          count=len(config.conv_channels))
    _check_float("dropout", config.dropout, 0.0, 1.0, high_inclusive=False)
    _check_choice("task", config.task, TASKS)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    config.lr = _check_float("lr", config.lr, 0.0, 10.0, low_inclusive=False)
    config.weight_decay = _check_float("weight_decay", config.weight_decay, 0.0, 1.0)
    config.momentum = _check_float("momentum", config.momentum, 0.0, 1.0, high_inclusive=False)
    _check_choice("schedule", config.schedule, SCHEDULES)
    _check_int("batch_size", config.batch_size, 1, 65536)
    _check_int("epochs", config.epochs, 1, 10000)
    _check_int("seed", config.seed, 0, 2**32 - 1)
    config.val_split = _check_float("val_split", config.val_split, 0.0, 0.9, low_inclusive=False)
    _check_int("early_stopping_patience", config.early_stopping_patience, 0)
    _check_choice("precision", config.precision, PRECISIONS)
    if not isinstance(config.gradient_checkpointing, bool):
        raise ConfigError("gradient_checkpointing", gettext_noop("must be true or false, got %(value)r"),
                          value=config.gradient_checkpointing)
    _check_choice("device", config.device, ("auto", "cpu", "cuda"))
    return config
