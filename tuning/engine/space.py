"""Search spaces: which run-config parameters a study varies, and how.

A space is a JSON object that maps a parameter of the run config to how it
is searched:

    {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true},
     "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
     "hidden_sizes[0]": {"type": "int", "low": 32, "high": 512, "step": 32}}

`name[i]` searches one element of a list parameter (a layer width). Every
error names the parameter and what is wrong with it, and the range's ends
and every choice are checked against the run config's own validation, so a
study never samples a config that a run would refuse.
"""

import copy
import math
import re
from dataclasses import dataclass, fields

from training.engine.config import ConfigError, RunConfig, gettext_noop, parse_config

KINDS = ("float", "int", "categorical")
MAX_PARAMETERS = 32
MAX_CHOICES = 64
_ELEMENT = re.compile(r"^(?P<name>[a-z_]+)\[(?P<index>\d+)\]$")
_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


class SpaceError(ConfigError):
    """A search space is invalid; `field` is `space.<parameter>` or `space`."""

    def __init__(self, parameter: str, template: str, **params):
        super().__init__(f"space.{parameter}" if parameter else "space", template, **params)
        self.parameter = parameter


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def distribution(self):
        """Return the Optuna distribution that samples this parameter."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return CategoricalDistribution(self.choices)

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        spec = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


def _field_types() -> dict[str, type]:
    defaults = RunConfig()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(RunConfig)}


def _target(name: str, base: dict) -> tuple[str, int | None, type]:
    """Return (config field, list index or None, value type) that parameter `name` sets."""
    types = _field_types()
    match = _ELEMENT.match(name)
    if match:
        field_name, index = match["name"], int(match["index"])
        if types.get(field_name) is not list:
            raise SpaceError(name, gettext_noop("only list parameters take an index; the list parameters are "
                                                "%(lists)s"), lists=", ".join(sorted(k for k, t in types.items()
                                                                                     if t is list)))
        length = len(base.get(field_name) or [])
        if index >= length:
            raise SpaceError(name, gettext_noop("index %(index)s is past the end of the base config's "
                                                "%(list)s, which has %(length)s elements"),
                             index=index, list=field_name, length=length)
        return field_name, index, int
    if name not in types:
        raise SpaceError(name, gettext_noop("unknown parameter; expected one of %(known)s, or an element of "
                                            "a list such as hidden_sizes[0]"),
                         known=", ".join(sorted(k for k, t in types.items() if t is not list)))
    if types[name] is list:
        raise SpaceError(name, gettext_noop("is a list; search its elements one by one, e.g. %(name)s[0]"),
                         name=name)
    return name, None, types[name]


def _number(name: str, key: str, value, integer: bool):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(name, gettext_noop("'%(key)s' must be a finite number, got %(value)r"), key=key, value=value)
    if integer and value != int(value):
        raise SpaceError(name, gettext_noop("'%(key)s' must be an integer for an int parameter, got %(value)r"),
                         key=key, value=value)
    return int(value) if integer else float(value)


def _parse_param(name: str, spec, base: dict) -> Param:
    if not isinstance(spec, dict):
        raise SpaceError(name, gettext_noop("must be an object such as {\"type\": \"float\", \"low\": 0.0001, "
                                            "\"high\": 0.1}, got %(value)r"), value=spec)
    kind = spec.get("type")
    if kind not in KINDS:
        raise SpaceError(name, gettext_noop("'type' must be one of %(kinds)s, got %(value)r"),
                         kinds=", ".join(KINDS), value=kind)
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        raise SpaceError(name, gettext_noop("unknown key '%(key)s' for a %(kind)s parameter; expected %(known)s"),
                         key=unknown[0], kind=kind, known=", ".join(sorted(_KEYS[kind])))
    _, _, value_type = _target(name, base)

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(name, gettext_noop("'choices' must be a non-empty list"))
        if len(choices) > MAX_CHOICES:
            raise SpaceError(name, gettext_noop("has %(count)s choices; at most %(maximum)s are allowed"),
                             count=len(choices), maximum=MAX_CHOICES)
        for choice in choices:
            if choice is not None and not isinstance(choice, bool | int | float | str):
                raise SpaceError(name, gettext_noop("choice %(value)r is not a number, a string, true, false "
                                                    "or null"), value=choice)
        if len({repr(c) for c in choices}) != len(choices):
            raise SpaceError(name, gettext_noop("lists a choice twice"))
        return Param(name, kind, choices=tuple(choices))

    if value_type not in (int, float):
        raise SpaceError(name, gettext_noop("is not numeric; search it as categorical with a list of choices"))
    if kind == "float" and value_type is int:
        raise SpaceError(name, gettext_noop("takes integers; use type int or categorical"))
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(name, gettext_noop("'%(key)s' is missing"), key=key)
    low = _number(name, "low", spec["low"], integer)
    high = _number(name, "high", spec["high"], integer)
    if low > high:
        raise SpaceError(name, gettext_noop("the range is empty: low %(low)s is above high %(high)s"),
                         low=low, high=high)
    if low == high:
        raise SpaceError(name, gettext_noop("low and high are both %(value)s; set a fixed value in the base "
                                            "config instead"), value=low)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(name, gettext_noop("'log' must be true or false, got %(value)r"), value=log)
    if log and low <= 0:
        raise SpaceError(name, gettext_noop("a log scale needs low above 0, got %(low)s"), low=low)
    step = spec.get("step")
    if step is not None:
        step = _number(name, "step", step, integer)
        if step <= 0:
            raise SpaceError(name, gettext_noop("'step' must be above 0, got %(value)s"), value=step)
        if log:
            raise SpaceError(name, gettext_noop("'step' and a log scale cannot be combined"))
        intervals = (high - low) / step
        if abs(intervals - round(intervals)) > 1e-9 * max(1.0, intervals):
            raise SpaceError(name, gettext_noop("'step' %(step)s does not divide the range %(low)s to %(high)s"),
                             step=step, low=low, high=high)
    return Param(name, kind, low=low, high=high, log=log, step=step)


def apply_params(base: dict, params: dict) -> dict:
    """Return a copy of the base config with the sampled parameter values set."""
    config = copy.deepcopy(base)
    for name, value in params.items():
        match = _ELEMENT.match(name)
        if match:
            config[match["name"]][int(match["index"])] = value
        else:
            config[name] = value
    return config


def _check_values(param: Param, base: dict) -> None:
    """Run the config's own validation on the range's ends or on every choice."""
    values = param.choices if param.kind == "categorical" else (param.low, param.high)
    for value in values:
        try:
            parse_config(apply_params(base, {param.name: value}))
        except ConfigError as exc:
            # The run config's own message names the value ("must lie in (0.0, 10.0], got 20.0").
            raise SpaceError(param.name, exc.template, **exc.params) from None


def _check_used(params: list[Param], base: dict) -> None:
    """Refuse a parameter that no trial's network or optimizer would read."""
    names = {param.name for param in params}
    model_searched = "model" in names
    for param in params:
        field = _ELEMENT.match(param.name)["name"] if _ELEMENT.match(param.name) else param.name
        if field == "conv_channels" and base.get("model") != "cnn" and not model_searched:
            raise SpaceError(param.name, gettext_noop("only the CNN reads conv_channels, and the base config "
                                                      "trains an MLP; set \"model\": \"cnn\" in the base config"))
        if field == "momentum" and base.get("optimizer") != "sgd" and "optimizer" not in names:
            raise SpaceError(param.name, gettext_noop("only SGD reads momentum, and the base config uses "
                                                      "%(optimizer)s; set \"optimizer\": \"sgd\" or search "
                                                      "the optimizer too"), optimizer=base.get("optimizer"))


def parse_space(raw, base: dict) -> list[Param]:
    """Validate a search space against the complete base config it varies; raises SpaceError."""
    if not isinstance(raw, dict):
        raise SpaceError("", gettext_noop("must be a JSON object that maps parameters to their ranges, got "
                                          "%(type)s"), type=type(raw).__name__)
    if not raw:
        raise SpaceError("", gettext_noop("is empty; add at least one parameter to search"))
    if len(raw) > MAX_PARAMETERS:
        raise SpaceError("", gettext_noop("has %(count)s parameters; at most %(maximum)s are allowed"),
                         count=len(raw), maximum=MAX_PARAMETERS)
    params = []
    for name, spec in raw.items():
        param = _parse_param(str(name), spec, base)
        _check_values(param, base)
        params.append(param)
    _check_used(params, base)
    return params


def space_to_dict(params: list[Param]) -> dict:
    return {param.name: param.to_dict() for param in params}
