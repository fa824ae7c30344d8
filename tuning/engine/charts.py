"""Plotly figures of a study, drawn by optuna.visualization from the study in Optuna's storage.

Nothing here imports Django. `study_charts` returns each chart as a plain
JSON-able dict: {"figure": {"data": [...], "layout": {...}}} when it can be
drawn, or {"reason": TEMPLATE, "params": {...}} when it cannot be drawn yet
(too few complete trials, a single parameter for a contour, ...). The
reasons are marked with gettext_noop, so the caller translates them. The
caller also sets the titles: figures come without one.
"""

import json
import re
import warnings

from training.engine.config import gettext_noop

CHART_KEYS = ("history", "intermediate", "importances", "parallel", "slice", "contour", "pareto")
# Chart height in pixels. The page sets the width.
HEIGHT = 320
# Pareto-front points: on the front in the studio's red, the others grey.
PARETO_COLOR = "#d92d20"
DOMINATED_COLOR = "#98a2b3"
# Words of Optuna's figures, replaced by the caller's `labels` (see DEFAULT_LABELS).
_OPTUNA_WORDS = {
    "Trial": "trial",
    "Best Value": "best",
    "Best Trial": "best_trial",
    "Step": "epoch",
    "Hyperparameter Importance": "importance",
    "Hyperparameter": "parameter",
}
DEFAULT_LABELS = {"trial": "Trial", "best": "Best value", "best_trial": "Best trial", "epoch": "Epoch",
                  "importance": "Importance", "parameter": "Parameter", "pruned": "pruned"}
_TRIAL_NAME = re.compile(r"^Trial(\d+)$")


def _not_yet(template: str, **params) -> dict:
    return {"reason": template, "params": params}


def _figure_dict(figure, replacements: dict) -> dict:
    """Return the figure as JSON-able data without Plotly's template, title or fixed width.

    The template alone is about 7 kB per figure, and the page draws with
    Plotly.js defaults like the run page's charts.
    """
    import plotly.io

    data = json.loads(plotly.io.to_json(figure, validate=False))
    layout = data.get("layout", {})
    for key in ("template", "title", "width"):
        layout.pop(key, None)
    layout["height"] = HEIGHT
    layout.setdefault("margin", {"l": 60, "r": 20, "t": 20, "b": 50})
    for key, axis in layout.items():
        # Long parameter names such as hidden_sizes[0] would be cut at the fixed margin.
        if re.fullmatch(r"[xy]axis\d*", key) and isinstance(axis, dict):
            axis["automargin"] = True
    data["data"] = [trace for trace in data.get("data", []) if not _empty_trace(trace)]
    _replace_words(data, replacements)
    return {"data": data["data"], "layout": layout}


def _empty_trace(trace: dict) -> bool:
    """True for a scatter trace without points, such as Optuna's "Infeasible Trial" of studies without constraints."""
    return trace.get("type") == "scatter" and trace.get("x") == [] and trace.get("y") == []


def _replace_words(node, replacements: dict) -> None:
    """Replace Optuna's English axis titles and trace names, in place, wherever they occur."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "name", "label") and isinstance(value, str) and value in replacements:
                node[key] = replacements[value]
            else:
                _replace_words(value, replacements)
    elif isinstance(node, list):
        for item in node:
            _replace_words(item, replacements)


class _Context:
    """The inputs that every chart of one request shares: the study, its complete trials and the objective to plot."""

    def __init__(self, study, objectives: list[dict], objective_index: int, labels: dict, pruning: bool):
        import optuna

        self.study = study
        self.objectives = objectives
        self.index = objective_index
        self.metric = objectives[objective_index]["metric"]
        self.multi = len(objectives) > 1
        self.pruning = pruning
        self.labels = {**DEFAULT_LABELS, **(labels or {})}
        self.trials = study.get_trials(deepcopy=False)
        self.complete = [t for t in self.trials if t.state == optuna.trial.TrialState.COMPLETE]
        self.params = sorted({name for t in self.complete for name in t.params})
        self.replacements = {optuna_word: self.labels[key] for optuna_word, key in _OPTUNA_WORDS.items()}
        self.replacements["Objective Value"] = self.metric
        self.replacements["Intermediate Value"] = objectives[0]["metric"]

    def target_options(self) -> dict:
        """Return the keyword arguments that pick the plotted objective.

        With several objectives, Optuna needs the objective as a `target` function.
        """
        if not self.multi:
            return {"target_name": self.metric}
        index = self.index
        return {"target": lambda trial: trial.values[index], "target_name": self.metric}

    def figure(self, figure) -> dict:
        drawn = _figure_dict(figure, self.replacements)
        if not drawn["data"]:
            return _not_yet(gettext_noop("not enough trials to draw this chart yet"))
        return {"figure": drawn}


def _history(context: _Context) -> dict:
    from optuna.visualization import plot_optimization_history

    if not context.complete:
        return _not_yet(gettext_noop("no trial has completed yet"))
    return context.figure(plot_optimization_history(context.study, **context.target_options()))


def _intermediate(context: _Context) -> dict:
    """Draw the per-epoch values of the first objective, with pruned trials dotted."""
    import optuna
    from optuna.visualization import plot_intermediate_values

    if not context.pruning:
        return _not_yet(gettext_noop("trials report per-epoch values to Optuna only when the study has a pruner "
                                     "and a single objective"))
    if not any(t.intermediate_values for t in context.trials):
        return _not_yet(gettext_noop("no trial has finished an epoch yet"))
    pruned = {t.number for t in context.trials if t.state == optuna.trial.TrialState.PRUNED}
    chart = context.figure(plot_intermediate_values(context.study))
    for trace in chart.get("figure", {}).get("data", []):
        match = _TRIAL_NAME.match(str(trace.get("name", "")))
        if not match:
            continue
        number = int(match[1])
        trace["name"] = f"{context.labels['trial']} {number}"
        if number in pruned:
            trace["name"] += f" ({context.labels['pruned']})"
            trace["line"] = {**trace.get("line", {}), "dash": "dot"}
    return chart


def _importances(context: _Context) -> dict:
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import plot_param_importances

    if len(context.complete) < 2:
        return _not_yet(gettext_noop("importances need at least %(count)s complete trials"), count=2)
    try:
        # fANOVA splits the variance of the objective among the parameters, whatever the direction.
        # A fixed seed keeps the bars still between two refreshes with the same trials.
        figure = plot_param_importances(context.study, evaluator=FanovaImportanceEvaluator(seed=0),
                                        **context.target_options())
    except RuntimeError:
        # fANOVA raises "Encountered zero total variance in all trees" when every trial has the same value.
        return _not_yet(gettext_noop("every complete trial has the same value, so no parameter explains a "
                                     "difference yet"))
    return context.figure(figure)


def _parallel(context: _Context) -> dict:
    from optuna.visualization import plot_parallel_coordinate

    if not context.complete:
        return _not_yet(gettext_noop("no trial has completed yet"))
    return context.figure(plot_parallel_coordinate(context.study, **context.target_options()))


def _slice(context: _Context) -> dict:
    from optuna.visualization import plot_slice

    if not context.complete:
        return _not_yet(gettext_noop("no trial has completed yet"))
    return context.figure(plot_slice(context.study, **context.target_options()))


def _contour(context: _Context, importances: dict) -> dict:
    """Contour of the two most important parameters: all pairs would make a grid of n² plots."""
    from optuna.visualization import plot_contour

    if len(context.complete) < 2:
        return _not_yet(gettext_noop("a contour needs at least %(count)s complete trials"), count=2)
    if len(context.params) < 2:
        return _not_yet(gettext_noop("a contour needs at least two parameters in the search space"))
    pair = _top_two_parameters(importances, context.params)
    return context.figure(plot_contour(context.study, params=pair, **context.target_options()))


def _top_two_parameters(importances: dict, params: list[str]) -> list[str]:
    """Return the two parameters with the longest importance bars, else the first two by name."""
    figure = importances.get("figure")
    if figure and figure["data"]:
        # Optuna lists the bars from the least to the most important.
        ranked = [name for name in reversed(figure["data"][0].get("y", [])) if name in params]
        if len(ranked) >= 2:
            return ranked[:2]
    return params[:2]


def _pareto(context: _Context) -> dict:
    from optuna.visualization import plot_pareto_front

    if not context.multi:
        return _not_yet(gettext_noop("a Pareto front needs several objectives"))
    if not context.complete:
        return _not_yet(gettext_noop("no trial has completed yet"))
    names = [objective["metric"] for objective in context.objectives]
    chart = context.figure(plot_pareto_front(context.study, target_names=names))
    figure = chart.get("figure")
    if figure:
        # Optuna colours the points of its two traces by trial number, with two colour bars that squeeze
        # the plot to half the card, and trial 0 comes out white. One colour per trace and a legend
        # keep the front readable, and the hover still shows each trial's number.
        for trace in figure["data"]:
            best = "Best Trial" in str(trace.get("hovertemplate", ""))
            trace["marker"] = {"color": PARETO_COLOR if best else DOMINATED_COLOR, "size": 9,
                               "line": {"color": "white", "width": 1}}
            trace["name"] = context.labels["best_trial"] if best else context.labels["trial"]
            trace["showlegend"] = True
        figure["layout"]["legend"] = {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}
    return chart


def study_charts(study, objectives: list[dict], *, objective_index: int = 0, labels: dict | None = None,
                 pruning: bool = False) -> dict[str, dict]:
    """Draw every chart of an Optuna study and return {key: chart} for each key of CHART_KEYS.

    `objectives` are the study's [{"metric", "direction"}] in Optuna's order,
    and `objective_index` picks the one that the history, importances,
    parallel coordinates, slice and contour plot. `labels` translates the
    words of the figures (see DEFAULT_LABELS). `pruning` is true when the
    trials report per-epoch values, which the intermediate-values chart draws.
    """
    if not 0 <= objective_index < len(objectives):
        raise ValueError(f"objective_index {objective_index} is out of range for {len(objectives)} objectives")
    context = _Context(study, objectives, objective_index, labels, pruning)
    with warnings.catch_warnings():
        # Optuna warns about experimental arguments and about columns it leaves out, and draws the charts anyway.
        warnings.simplefilter("ignore")
        importances = _importances(context)
        return {
            "history": _history(context),
            "intermediate": _intermediate(context),
            "importances": importances,
            "parallel": _parallel(context),
            "slice": _slice(context),
            "contour": _contour(context, importances),
            "pareto": _pareto(context),
        }
