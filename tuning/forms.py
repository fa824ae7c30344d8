"""The study form: dataset, base run config, search space, objectives and the search's settings.

The search space is edited in two places that static/js/study_create.js
keeps in step: a formset with one row per parameter, and a JSON textarea.
The hidden `space_source` field records which one the user edited last, and
that one is submitted. Django only checks that each field parses.
tuning.services.create_study validates the study, and the form shows its
ConfigError next to the field, parameter row or objective that it names.
"""

import json

from django import forms
from django.forms import formset_factory
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from projects.models import Dataset
from training.engine.config import ConfigError
from training.forms import config_json_text, parse_config_json, suggested_config
from tuning.engine.search import EPOCH_METRICS, MAX_OBJECTIVES, MODEL_METRICS, PRUNERS, SAMPLERS, default_objectives

SPACE_PREFIX = "space"
ALL_METRICS = tuple(dict.fromkeys([*EPOCH_METRICS["classification"], *EPOCH_METRICS["regression"], *MODEL_METRICS]))
SAMPLER_LABELS = {
    "tpe": gettext_lazy("TPE"),
    "gp": gettext_lazy("Gaussian process"),
    "cmaes": gettext_lazy("CMA-ES"),
    "random": gettext_lazy("Random"),
    "qmc": gettext_lazy("Quasi-Monte Carlo"),
    "nsga2": gettext_lazy("NSGA-II"),
}
PRUNER_LABELS = {
    "median": gettext_lazy("Median"),
    "hyperband": gettext_lazy("Hyperband"),
    "sha": gettext_lazy("Successive halving"),
    "none": gettext_lazy("None"),
}


def default_space(base_config: dict) -> dict:
    """Return the search space the form suggests for a base config.

    The batch sizes are half, once and twice the base config's, and the
    first hidden layer's width is searched only when the config has one.
    """
    batch = int(base_config.get("batch_size") or 64)
    space = {
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "batch_size": {"type": "categorical", "choices": [max(1, batch // 2), batch, batch * 2]},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "hidden_sizes[0]": {"type": "int", "low": 32, "high": 256, "step": 32},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]},
    }
    if not base_config.get("hidden_sizes"):
        del space["hidden_sizes[0]"]
    return space


def space_json_text(space: dict) -> str:
    return json.dumps(space, indent=2)


def dataset_defaults(dataset: Dataset) -> dict:
    """Return what the form fills in for `dataset`: base config, search space and objectives."""
    config = suggested_config(dataset)
    space = default_space(config)
    return {
        "task": dataset.task,
        "base_config": config_json_text(config),
        "space": space_json_text(space),
        "metrics": [*EPOCH_METRICS[dataset.task], *MODEL_METRICS],
        "objective": default_objectives(dataset.task)[0].metric,
    }


# ---- Parameter rows ------------------------------------------------------------


def _number_text(value) -> str:
    return "" if value is None else repr(value)


def parse_choice(text: str):
    """Read one categorical choice: JSON where it parses (32, 0.5, true, null, "32"), else the text itself."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


def choices_text(choices: list) -> str:
    """Write choices as the row's comma-separated text, quoting a string that would read as another value."""
    parts = []
    for choice in choices:
        plain = isinstance(choice, str) and parse_choice(choice) == choice and choice.strip() == choice
        if plain and "," not in choice:
            parts.append(choice)
        else:
            parts.append(json.dumps(choice))
    return ", ".join(parts)


def _split_choices(text: str) -> list[str]:
    """Split "32, 64, \"a,b\"" at the commas outside double quotes."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


class SpaceRowForm(forms.Form):
    """One parameter of the search space. The fields that its type does not use are ignored."""

    name = forms.CharField(label=gettext_lazy("Parameter"), max_length=100, required=False,
                           widget=forms.TextInput(attrs={"placeholder": "lr", "spellcheck": "false"}))
    type = forms.ChoiceField(label=gettext_lazy("Type"), initial="float", choices=[
        ("float", gettext_lazy("float")), ("int", gettext_lazy("int")), ("categorical", gettext_lazy("categorical"))])
    low = forms.CharField(label=gettext_lazy("Low"), max_length=40, required=False)
    high = forms.CharField(label=gettext_lazy("High"), max_length=40, required=False)
    log = forms.BooleanField(label=gettext_lazy("Log scale"), required=False)
    step = forms.CharField(label=gettext_lazy("Step"), max_length=40, required=False)
    choices = forms.CharField(label=gettext_lazy("Choices"), max_length=2000, required=False,
                              widget=forms.TextInput(attrs={"placeholder": "32, 64, 128", "spellcheck": "false"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The row's inputs sit in table cells without their own <label>.
        for field in self.fields.values():
            field.widget.attrs.setdefault("aria-label", field.label)

    @classmethod
    def initial_for(cls, name: str, spec: dict) -> dict:
        kind = spec.get("type", "float")
        if kind == "categorical":
            return {"name": name, "type": kind, "choices": choices_text(spec.get("choices") or [])}
        return {"name": name, "type": kind, "low": _number_text(spec.get("low")),
                "high": _number_text(spec.get("high")), "log": bool(spec.get("log")),
                "step": _number_text(spec.get("step"))}

    def is_blank(self) -> bool:
        data = self.cleaned_data
        return not any(str(data.get(key) or "").strip() for key in ("name", "low", "high", "step", "choices"))

    def spec(self) -> dict:
        """Return this row as a space entry, or raise ConfigError naming `space.<name>` for a non-number."""
        data = self.cleaned_data
        name = data["name"].strip()
        if data["type"] == "categorical":
            return {"type": "categorical", "choices": [parse_choice(part) for part in _split_choices(data["choices"])]}
        spec = {"type": data["type"]}
        for key in ("low", "high", "step"):
            text = (data.get(key) or "").strip()
            if text:
                spec[key] = _parse_number(name, key, text)
        if data.get("log"):
            spec["log"] = True
        return spec


def _parse_number(name: str, key: str, text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"space.{name}", _("'%(key)s' must be a number, got %(value)r")
                          % {"key": key, "value": text}) from None


SpaceRowFormSet = formset_factory(SpaceRowForm, extra=0, can_delete=True, max_num=64, validate_max=True)


def space_formset(data=None, space: dict | None = None):
    """Return the parameter rows: bound to POST data, or filled from a space dict."""
    if data is not None:
        return SpaceRowFormSet(data, prefix=SPACE_PREFIX)
    initial = [SpaceRowForm.initial_for(name, spec) for name, spec in (space or {}).items()
               if isinstance(spec, dict)]
    return SpaceRowFormSet(prefix=SPACE_PREFIX, initial=initial)


# ---- The study form --------------------------------------------------------------


def _objective_fields(index: int):
    metric_choices = [(metric, metric) for metric in ALL_METRICS]
    if index:
        metric_choices.insert(0, ("", gettext_lazy("– none –")))
    metric = forms.ChoiceField(label=gettext_lazy("Metric"), choices=metric_choices, required=index == 0)
    direction = forms.ChoiceField(label=gettext_lazy("Direction"), required=False, choices=[
        ("", gettext_lazy("the metric's better side")), ("maximize", gettext_lazy("maximize")),
        ("minimize", gettext_lazy("minimize"))])
    return metric, direction


class StudyForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label=gettext_lazy("Dataset"))
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200, required=False,
                           help_text=gettext_lazy("Optional. A study without a name is called after its dataset."))
    base_config = forms.CharField(
        label=gettext_lazy("Base run config (JSON)"),
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text=gettext_lazy("Every trial trains with this config, with the searched parameters set to the "
                               "values the sampler proposes. Parameters left out take their defaults."))
    space_source = forms.ChoiceField(choices=[("rows", "rows"), ("json", "json")], required=False,
                                     initial="rows", widget=forms.HiddenInput)
    space_json = forms.CharField(
        label=gettext_lazy("Search space as JSON"), required=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text=gettext_lazy("An object that maps each parameter to its range, e.g. {\"lr\": {\"type\": "
                               "\"float\", \"low\": 0.0001, \"high\": 0.1, \"log\": true}}. Edits here update the "
                               "table above, and edits there update this text."))
    objective_0_metric, objective_0_direction = _objective_fields(0)
    objective_1_metric, objective_1_direction = _objective_fields(1)
    objective_2_metric, objective_2_direction = _objective_fields(2)
    sampler = forms.ChoiceField(label=gettext_lazy("Sampler"), initial="tpe",
                                choices=[(name, SAMPLER_LABELS[name]) for name in SAMPLERS],
                                help_text=gettext_lazy("How Optuna proposes the next trial's parameters. TPE suits "
                                                       "most searches. CMA-ES takes a single objective, and NSGA-II "
                                                       "is made for several."))
    pruner = forms.ChoiceField(label=gettext_lazy("Pruner"), initial="median",
                               choices=[(name, PRUNER_LABELS[name]) for name in PRUNERS],
                               help_text=gettext_lazy("Stops trials whose validation metric falls behind the "
                                                      "others after an epoch. Needs a single validation "
                                                      "objective."))
    n_trials = forms.IntegerField(label=pgettext_lazy("number of trials", "Trials"), initial=20,
                                  help_text=gettext_lazy("How many trials the study runs in all."))
    parallel = forms.IntegerField(label=gettext_lazy("Parallel trials"), initial=2,
                                  help_text=gettext_lazy("How many trials may be queued or training at once."))
    timeout_seconds = forms.IntegerField(label=gettext_lazy("Time budget (seconds)"), required=False,
                                         help_text=gettext_lazy("No new trial starts after this many seconds. "
                                                                "Leave it empty for no limit."))
    seed = forms.IntegerField(label=gettext_lazy("Seed"), initial=0,
                              help_text=gettext_lazy("Seed of the sampler, so that a study can be repeated."))

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["dataset"].queryset = project.datasets.order_by("-created_at")
        self.rows = space_formset(self.data if self.is_bound else None)
        # Errors of the space as a whole, and of each parameter row by its index in self.rows.
        self.space_errors: list[str] = []
        self.row_errors: dict[int, list[str]] = {}
        self.options: dict | None = None

    @property
    def source(self) -> str:
        return "json" if self.data.get("space_source") == "json" else "rows"

    @classmethod
    def initial_for(cls, dataset: Dataset | None) -> dict:
        if dataset is None:
            return {}
        defaults = dataset_defaults(dataset)
        return {"dataset": dataset.pk, "base_config": defaults["base_config"], "space_json": defaults["space"],
                "space_source": "rows", "objective_0_metric": defaults["objective"]}

    @classmethod
    def unbound(cls, project, dataset: Dataset | None) -> "StudyForm":
        form = cls(project=project, initial=cls.initial_for(dataset))
        if dataset is not None:
            form.rows = space_formset(space=json.loads(form.initial["space_json"]))
        return form

    def objective_rows(self) -> list[tuple]:
        """Return (metric field, direction field) for each objective row of the page."""
        return [(self[f"objective_{i}_metric"], self[f"objective_{i}_direction"]) for i in range(MAX_OBJECTIVES)]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        options = {}
        try:
            options["base_config"] = parse_config_json(cleaned["base_config"])
        except ConfigError as exc:
            self.add_study_error(exc)
        space = self._space()
        if space is not None:
            options["space"] = space
        options["objectives"], self.objective_rows_used = self._objectives(cleaned)
        for name in ("sampler", "pruner", "n_trials", "parallel", "timeout_seconds", "seed"):
            options[name] = cleaned.get(name)
        if not self.errors and not self.space_errors and not self.row_errors:
            self.options = options
        return cleaned

    def _space(self) -> dict | None:
        """Return the submitted search space, or None after adding the error that explains why there is none."""
        if self.source == "json":
            return self._space_from_json()
        if not self.rows.is_valid():
            self.space_errors.extend(str(error) for error in self.rows.non_form_errors())
            return None
        space = {}
        for index, row in enumerate(self.rows.forms):
            if row.cleaned_data.get("DELETE") or row.is_blank():
                continue
            name = row.cleaned_data["name"].strip()
            if not name:
                self._add_row_error(index, _("space: a parameter name is missing in this row"))
            elif name in space:
                self._add_row_error(index, _("space.%(name)s: the parameter is listed twice") % {"name": name})
            else:
                try:
                    space[name] = row.spec()
                except ConfigError as exc:
                    self._add_row_error(index, f"{exc.field}: {exc.translate(_)}")
        if self.row_errors:
            return None
        # Show the JSON of the rows as submitted, so both views of the space agree on the page.
        self.data = self.data.copy()
        self.data["space_json"] = space_json_text(space)
        return space

    def _space_from_json(self) -> dict | None:
        text = self.data.get("space_json", "")
        if not text.strip():
            self.add_error("space_json", _("space: is empty; add at least one parameter to search"))
            return None
        try:
            space = json.loads(text)
        except json.JSONDecodeError as exc:
            self.add_error("space_json", _("space: is not valid JSON: %(error)s at line %(line)s, column %(column)s")
                           % {"error": exc.msg, "line": exc.lineno, "column": exc.colno})
            return None
        if isinstance(space, dict):
            # The rows follow the JSON that was submitted.
            self.rows = space_formset(space=space)
        return space

    def _objectives(self, cleaned: dict) -> tuple[list[dict], list[int]]:
        """Return the chosen objectives and, for each, the index of the page row it came from."""
        objectives, rows = [], []
        for index in range(MAX_OBJECTIVES):
            metric = cleaned.get(f"objective_{index}_metric")
            if not metric:
                continue
            objective = {"metric": metric}
            if cleaned.get(f"objective_{index}_direction"):
                objective["direction"] = cleaned[f"objective_{index}_direction"]
            objectives.append(objective)
            rows.append(index)
        return objectives, rows

    def add_study_error(self, exc: ConfigError) -> None:
        """Show a ConfigError of create_study next to the field, parameter row or objective it names."""
        message = f"{exc.field}: {exc.translate(_)}"
        head = exc.field.split(".", 1)[0].split("[", 1)[0]
        if head == "space":
            self._add_space_error(exc, message)
        elif head == "objectives":
            self.add_error(self._objective_field(exc.field), message)
        elif head in ("dataset", "sampler", "pruner", "n_trials", "parallel", "timeout_seconds", "seed"):
            self.add_error(head, message)
        else:
            # A run-config field such as lr, hidden_sizes[1] or task: it comes from the base config.
            self.add_error("base_config", message)

    def _objective_field(self, field: str) -> str:
        if field.startswith("objectives[") and field.endswith("]"):
            index = int(field[len("objectives["):-1])
            rows = getattr(self, "objective_rows_used", [])
            if index < len(rows):
                return f"objective_{rows[index]}_metric"
        return "objective_0_metric"

    def _add_row_error(self, index: int, message: str) -> None:
        self.row_errors.setdefault(index, []).append(message)

    def _add_space_error(self, exc: ConfigError, message: str) -> None:
        parameter = exc.field.split(".", 1)[1] if "." in exc.field else ""
        index = self._row_index(parameter) if parameter else None
        if index is not None:
            self._add_row_error(index, message)
        if self.source == "json":
            self.add_error("space_json", message)
        elif index is None:
            self.space_errors.append(message)

    def _row_index(self, name: str) -> int | None:
        for index, row in enumerate(self.rows.forms):
            if (row["name"].value() or "").strip() == name:
                return index
        return None

    def space_rows(self) -> list[tuple]:
        """Return (row form, its error messages) for each parameter row of the page."""
        return [(row, self.row_errors.get(index, [])) for index, row in enumerate(self.rows.forms)]
