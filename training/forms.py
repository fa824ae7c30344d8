"""The run form: a config built from plain fields, or typed as JSON.

Django only checks that each field parses (a number is a number). The config
itself is validated by training.services, and the form shows a ConfigError
next to the field it names.
"""

import json

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from projects.models import Dataset
from training.engine.config import ConfigError, RunConfig
from training.engine.nets import image_shape
from training.services import validate_run_config

# Parameters the form shows as fields, in the order of the page.
CONFIG_FIELDS = (
    "model", "hidden_sizes", "conv_channels", "dropout", "optimizer", "lr", "momentum", "weight_decay",
    "schedule", "batch_size", "epochs", "seed", "val_split", "early_stopping_patience", "precision",
    "gradient_checkpointing",
)
SIZE_LIST_FIELDS = ("hidden_sizes", "conv_channels")


def is_image_dataset(dataset: Dataset) -> bool:
    return image_shape(dataset.input_shape) is not None


def suggested_config(dataset: Dataset) -> dict:
    """Return the form's default config for `dataset`: a CNN for images, a small MLP for tables."""
    config = RunConfig(task=dataset.task).to_dict()
    if is_image_dataset(dataset):
        config.update(model="cnn", conv_channels=[16, 32], hidden_sizes=[64], lr=0.003, epochs=10)
    else:
        config.update(model="mlp", hidden_sizes=[64, 32], lr=0.001, epochs=30)
        if dataset.num_rows < 1000:
            # Small tables: smaller batches give more steps per epoch.
            config["batch_size"] = 16
    return config


def _size_list_text(sizes: list[int]) -> str:
    return ",".join(str(size) for size in sizes)


def parse_size_list(name: str, text: str) -> list[int]:
    """Parse "128,64" into [128, 64], raising ConfigError naming `name` on anything else."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ConfigError(name, _("must be a comma-separated list of integers such as 128,64, got %(text)r")
                          % {"text": text}) from None


class RunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label=gettext_lazy("Dataset"))
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200, required=False,
                           help_text=gettext_lazy("Optional; runs without a name are shown as “run N”."))
    model = forms.ChoiceField(label=gettext_lazy("Model"), choices=[("mlp", "MLP"), ("cnn", "CNN")],
                              help_text=gettext_lazy("The CNN is offered for image datasets only."))
    hidden_sizes = forms.CharField(label=gettext_lazy("Hidden sizes"), max_length=200,
                                   help_text=gettext_lazy("Widths of the hidden layers (the CNN's head), comma "
                                                          "separated, e.g. 128,64."))
    conv_channels = forms.CharField(label=gettext_lazy("Conv channels"), max_length=200, required=False,
                                    help_text=gettext_lazy("Output channels of each convolution block, e.g. "
                                                           "16,32. CNN only."))
    dropout = forms.FloatField(label=gettext_lazy("Dropout"), help_text=gettext_lazy("Probability in [0, 1)."))
    optimizer = forms.ChoiceField(label=gettext_lazy("Optimizer"),
                                  choices=[("adam", "Adam"), ("adamw", "AdamW"), ("sgd", "SGD")])
    lr = forms.FloatField(label=gettext_lazy("Learning rate (lr)"))
    momentum = forms.FloatField(label=gettext_lazy("Momentum"), help_text=gettext_lazy("SGD only."))
    weight_decay = forms.FloatField(label=gettext_lazy("Weight decay"))
    schedule = forms.ChoiceField(label=gettext_lazy("Learning-rate schedule"), choices=[
        ("constant", gettext_lazy("Constant")), ("cosine", gettext_lazy("Cosine")),
        ("step", pgettext_lazy("learning-rate schedule", "Step")), ("onecycle", gettext_lazy("One cycle")),
    ])
    batch_size = forms.IntegerField(label=gettext_lazy("Batch size"))
    epochs = forms.IntegerField(label=gettext_lazy("Epochs"))
    seed = forms.IntegerField(label=gettext_lazy("Seed"))
    val_split = forms.FloatField(label=gettext_lazy("Validation split"),
                                 help_text=gettext_lazy("Fraction of the examples held out for validation."))
    early_stopping_patience = forms.IntegerField(
        label=gettext_lazy("Early stopping patience"),
        help_text=gettext_lazy("Stop after this many epochs without a better val/loss; 0 turns it off."))
    precision = forms.ChoiceField(label=gettext_lazy("Precision"),
                                  choices=[("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")])
    gradient_checkpointing = forms.BooleanField(
        label=gettext_lazy("Gradient checkpointing"), required=False,
        help_text=gettext_lazy("Recompute activations in the backward pass to save memory."))
    config_json = forms.CharField(
        label=gettext_lazy("Config as JSON"), required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text=gettext_lazy("Used instead of the fields above when you press “Create from JSON”. "
                               "Parameters left out take their defaults."))

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["dataset"].queryset = project.datasets.order_by("-created_at")
        # "json" when the JSON textarea was submitted; the fields are then ignored.
        self.source = "json" if self.data.get("source") == "json" else "fields"
        if self.source == "json":
            for name in CONFIG_FIELDS:
                self.fields[name].required = False
        self.config: dict | None = None

    @classmethod
    def initial_for(cls, dataset: Dataset | None) -> dict:
        """Return the form's initial values: the suggested config of `dataset`, also as JSON."""
        if dataset is None:
            return {}
        config = suggested_config(dataset)
        initial = {name: config[name] for name in CONFIG_FIELDS}
        for name in SIZE_LIST_FIELDS:
            initial[name] = _size_list_text(config[name])
        initial["dataset"] = dataset.pk
        initial["config_json"] = config_json_text(config)
        return initial

    def clean(self):
        cleaned = super().clean()
        dataset = cleaned.get("dataset")
        if dataset is None or self.errors:
            return cleaned
        try:
            raw = self._raw_config(cleaned)
            self.config = validate_run_config(raw, dataset)
        except ConfigError as exc:
            self.add_config_error(exc)
        return cleaned

    def _raw_config(self, cleaned: dict) -> dict:
        if self.source == "json":
            return parse_config_json(cleaned.get("config_json", ""))
        raw = {name: cleaned[name] for name in CONFIG_FIELDS if name not in SIZE_LIST_FIELDS}
        raw["hidden_sizes"] = parse_size_list("hidden_sizes", cleaned["hidden_sizes"])
        if cleaned.get("conv_channels", "").strip():
            raw["conv_channels"] = parse_size_list("conv_channels", cleaned["conv_channels"])
        return raw

    def add_config_error(self, exc: ConfigError) -> None:
        """Show a ConfigError next to the field it names, or under the JSON when that was submitted."""
        name = exc.field.split("[", 1)[0]
        if self.source == "json":
            target = "config_json"
        elif name == "task":
            target = "dataset"
        else:
            target = name if name in self.fields else None
        self.add_error(target, f"{exc.field}: {exc.translate(_)}")


def config_json_text(config: dict) -> str:
    """Return the config as the JSON the form shows, without `task` (it comes from the dataset)."""
    shown = {key: value for key, value in config.items() if key != "task"}
    return json.dumps(shown, indent=2)


def parse_config_json(text: str) -> dict:
    if not text.strip():
        raise ConfigError("config", _("is empty; type a JSON object such as {\"lr\": 0.001}"))
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("config", _("is not valid JSON: %(error)s at line %(line)s, column %(column)s")
                          % {"error": exc.msg, "line": exc.lineno, "column": exc.colno}) from None
    if not isinstance(raw, dict):
        raise ConfigError("config", _("must be a JSON object, got %(type)s") % {"type": type(raw).__name__})
    return raw
