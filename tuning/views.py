"""Web pages of studies: create one, follow its trials and charts live, stop it, promote a trial.

Pages read the Study and Trial rows. The live parts come over the websocket
in tuning.consumers, and the charts come as JSON from study_charts, which
draws them from Optuna's storage with tuning.engine.charts.
"""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from projects.models import Project
from projects.permissions import can_edit, can_view
from training.engine.config import ConfigError
from training.forms import is_image_dataset
from training.models import ACTIVE_STATUSES
from training.views import mlflow_run_url, run_status_labels
from tuning import events
from tuning.engine.charts import study_charts as draw_study_charts
from tuning.forms import PRUNER_LABELS, SAMPLER_LABELS, SPACE_PREFIX, StudyForm, dataset_defaults
from tuning.models import Study, StudyState, Trial, TrialState
from tuning.services import create_study, load_optuna_study, pareto_trial_numbers, promote, stop_study

# The project page lists at most this many studies, newest first.
PROJECT_PAGE_STUDIES = 100
# Seconds a drawn set of charts stays cached. A finished trial changes the cache key before that.
CHARTS_CACHE_SECONDS = 600


def _visible_study(request, pk: int) -> Study:
    """Return the study if the user may see it, else raise 404, so outsiders cannot probe study ids."""
    study = get_object_or_404(Study.objects.select_related("project__team", "dataset", "best_trial", "created_by"),
                              pk=pk)
    if not can_view(request.user, study.project):
        raise Http404
    return study


def _editable_project(request, pk: int) -> Project:
    project = get_object_or_404(Project, pk=pk)
    if not can_view(request.user, project):
        raise Http404
    if not can_edit(request.user, project):
        raise PermissionDenied(_("Only owners and maintainers of the team can start studies."))
    return project


def study_state_labels() -> dict:
    """Return each study state's label in the request's language (messages carry the sender's language)."""
    return {value: str(label) for value, label in StudyState.choices}


def trial_state_labels() -> dict:
    return {value: str(label) for value, label in TrialState.choices}


# ---- Creating a study --------------------------------------------------------------


@login_required
def study_create(request, project_pk: int):
    project = _editable_project(request, project_pk)
    datasets = list(project.datasets.order_by("-created_at"))
    if request.method == "POST":
        form = StudyForm(request.POST, project=project)
        if form.is_valid() and form.options is not None:
            study = _create_from_form(request, form)
            if study is not None:
                messages.success(request, _("Study “%(name)s” started its first trials.") % {"name": study.name})
                return redirect(study)
    else:
        form = StudyForm.unbound(project, _dataset_from_query(request, datasets))

    dataset_info = {str(d.pk): {**dataset_defaults(d), "image": is_image_dataset(d)} for d in datasets}
    return render(request, "tuning/study_create.html", {
        "project": project, "form": form, "datasets": datasets, "dataset_info": dataset_info,
        "empty_row": form.rows.empty_form, "space_prefix": SPACE_PREFIX,
        "create_labels": {
            "invalidJson": _("The JSON is not valid, so the table keeps the last valid search space: %(error)s"),
            "notObject": _("The search space must be a JSON object, so the table keeps the last valid one."),
        },
    })


def _dataset_from_query(request, datasets: list):
    """Return the dataset named by ?dataset=ID, else the newest one, else None."""
    requested = request.GET.get("dataset", "")
    for dataset in datasets:
        if str(dataset.pk) == requested:
            return dataset
    return datasets[0] if datasets else None


def _create_from_form(request, form: StudyForm) -> Study | None:
    try:
        return create_study(form.project, form.cleaned_data["dataset"], name=form.cleaned_data["name"],
                            user=request.user, **form.options)
    except ConfigError as exc:
        form.add_study_error(exc)
        return None


# ---- The study page ----------------------------------------------------------------


CHART_TITLES = {
    "pareto": gettext_lazy("Pareto front"),
    "history": gettext_lazy("Optimization history"),
    "intermediate": gettext_lazy("Per-epoch values and pruning"),
    "importances": gettext_lazy("Hyperparameter importances"),
    "contour": gettext_lazy("Contour of the two most important parameters"),
    "parallel": gettext_lazy("Parallel coordinates"),
    "slice": gettext_lazy("Slice"),
}


def _pruning(study: Study) -> bool:
    """True when the study's trials report per-epoch values to Optuna (see tuning.services.pruning_hook_for)."""
    return study.pruner != "none" and not study.multi_objective


def shown_charts(study: Study) -> list[str]:
    """Return the keys of the charts that the study page shows, in page order.

    Charts that this study can never draw are left out: the Pareto front of a
    single objective, per-epoch values without pruning, a contour of one parameter.
    """
    keys = []
    for key in CHART_TITLES:
        if key == "pareto" and not study.multi_objective:
            continue
        if key == "intermediate" and not _pruning(study):
            continue
        if key == "contour" and len(study.space) < 2:
            continue
        keys.append(key)
    return keys


class PromoteForm(forms.Form):
    trial = forms.IntegerField(label=gettext_lazy("Trial"), required=False, min_value=0)
    epochs = forms.IntegerField(label=gettext_lazy("Epochs"), required=False,
                                help_text=gettext_lazy("Empty: as many as the trial trained."))

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study
        self.chosen_trial: Trial | None = None

    def clean_trial(self):
        number = self.cleaned_data.get("trial")
        if number is None:
            self.chosen_trial = self.study.best_trial
            return number
        trial = self.study.trials.filter(number=number).first()
        if trial is None:
            raise forms.ValidationError(_("trial: this study has no trial %(number)s") % {"number": number})
        if trial.state != TrialState.COMPLETE:
            raise forms.ValidationError(_("trial: trial %(number)s is %(state)s, but only a complete trial "
                                          "can be promoted") % {"number": number, "state": trial.get_state_display()})
        self.chosen_trial = trial
        return number


def _trial_rows(study: Study, trials: list[Trial], params: list[str], pareto: set[int]) -> list[dict]:
    rows = []
    for trial in trials:
        values = list(trial.values) + [None] * (len(study.objectives) - len(trial.values))
        rows.append({
            "trial": trial,
            "params": [trial.params.get(name) for name in params],
            "values": values,
            "best": trial.pk == study.best_trial_id,
            "pareto": trial.number in pareto,
            "run_active": bool(trial.run and trial.run.status in ACTIVE_STATUSES),
        })
    return rows


def _promotable(study: Study, trials: list[Trial], pareto: list[int]) -> list[Trial]:
    """Return the trials the promote form offers: the Pareto front for several objectives, else the best trial."""
    if study.multi_objective:
        on_front = set(pareto)
        return [trial for trial in trials if trial.number in on_front]
    return [study.best_trial] if study.best_trial else []


def _promote_choice(study: Study, form: PromoteForm | None) -> int | None:
    """Return the trial number that the promote form preselects: the one submitted, else the best trial."""
    if form is not None and form.is_bound:
        try:
            return int(form.data.get("trial", ""))
        except ValueError:
            pass
    return study.best_trial.number if study.best_trial else None


def _detail_context(request, study: Study, promote_form: PromoteForm | None = None) -> dict:
    trials = list(study.trials.select_related("run").order_by("number"))
    params = list(study.space)
    pareto = pareto_trial_numbers(study) if study.multi_objective else []
    charts = shown_charts(study)
    live = {
        "study_id": study.pk,
        "ws_path": f"/ws/studies/{study.pk}/",
        "charts_url": reverse("study-charts", args=[study.pk]),
        "run_url": reverse("run-detail", args=[0]),
        "state": events.study_state(study),
        # In the server's time zone, like the dates the page shows: the script adds the duration to it.
        "created_at": timezone.localtime(study.created_at).isoformat(),
        "objectives": study.objectives,
        "params": params,
        "multi": study.multi_objective,
        "charts": charts,
        "labels": {
            "live": _("live"),
            "reconnecting": _("reconnecting…"),
            "forbidden": _("You no longer have access to this study."),
            "notFound": _("This study no longer exists."),
            "run": _("run %(id)s"),
            "epoch": _("epoch %(epoch)s/%(total)s"),
            "best": _("best"),
            "pareto": _("Pareto"),
            "chartsFailed": _("Loading the charts failed. The page tries again when the next trial finishes."),
            "trialOption": _("trial %(number)s: %(values)s"),
            "studyStates": study_state_labels(),
            "trialStates": trial_state_labels(),
            "runStatuses": run_status_labels(),
        },
    }
    return {
        "study": study, "project": study.project, "dataset": study.dataset,
        "can_edit": can_edit(request.user, study.project),
        "params": params, "trial_rows": _trial_rows(study, trials, params, set(pareto)),
        "progress_percent": round(study.progress * 100),
        "running_trials": study.trials_started - study.trials_finished,
        "promote_form": promote_form or PromoteForm(study=study),
        "promotable": _promotable(study, trials, pareto),
        "promote_choice": _promote_choice(study, promote_form),
        "trial_columns": len(params) + len(study.objectives) + 4,
        "mlflow_url": mlflow_run_url(study),
        "sampler_label": SAMPLER_LABELS.get(study.sampler, study.sampler),
        "pruner_label": PRUNER_LABELS.get(study.pruner, study.pruner),
        "chart_cards": [(key, CHART_TITLES[key]) for key in charts],
        "space_rows": [(name, spec) for name, spec in study.space.items()],
        "base_config_text": json.dumps(study.base_config, indent=2),
        "live": live,
    }


@login_required
def study_detail(request, pk: int):
    study = _visible_study(request, pk)
    return render(request, "tuning/study_detail.html", _detail_context(request, study))


def _chart_labels() -> dict:
    """Return the words inside the figures, translated (see tuning.engine.charts.DEFAULT_LABELS)."""
    return {"trial": _("Trial"), "best": _("Best value"), "best_trial": _("Pareto-optimal trial"),
            "epoch": _("Epoch"), "importance": _("Importance"), "parameter": _("Parameter"),
            "pruned": _("pruned")}


def _translated_chart(key: str, chart: dict) -> dict:
    translated = {"key": key, "title": str(CHART_TITLES[key])}
    if "figure" in chart:
        translated["figure"] = chart["figure"]
    else:
        reason = _(chart["reason"])
        translated["reason"] = reason % chart["params"] if chart["params"] else reason
    return translated


@login_required
@require_GET
def study_charts(request, pk: int):
    """Return the study's charts as Plotly figures, or for each chart that cannot be drawn yet, the reason.

    ?objective=I picks the objective that the history, importances and
    per-parameter charts plot, for studies with several objectives. Drawn
    charts are cached until the next trial finishes.
    """
    study = _visible_study(request, pk)
    try:
        objective = int(request.GET.get("objective", "0"))
    except ValueError:
        objective = -1
    if not 0 <= objective < len(study.objectives):
        return JsonResponse({"errors": [{"field": "objective", "message": _(
            "objective must be an index from 0 to %(maximum)s") % {"maximum": len(study.objectives) - 1}}]},
            status=400)
    key = (f"tuning:charts:{study.pk}:{study.trials_started}:{study.trials_finished}:{objective}:"
           f"{get_language()}")
    payload = cache.get(key)
    if payload is None:
        payload = _charts_payload(study, objective)
        cache.set(key, payload, CHARTS_CACHE_SECONDS)
    return JsonResponse(payload)


def _charts_payload(study: Study, objective: int) -> dict:
    drawn = draw_study_charts(load_optuna_study(study), study.objectives, objective_index=objective,
                              labels=_chart_labels(), pruning=_pruning(study))
    complete = {t.number: t.values for t in study.trials.filter(state=TrialState.COMPLETE)}
    pareto = pareto_trial_numbers(study) if study.multi_objective else []
    return {
        "objective": objective,
        "trials_finished": study.trials_finished,
        "charts": [_translated_chart(key, drawn[key]) for key in shown_charts(study)],
        "best_trial": study.best_trial.number if study.best_trial else None,
        "pareto": [{"number": number, "values": complete[number]} for number in pareto],
    }


# ---- Stop and promote ----------------------------------------------------------------


@login_required
@require_POST
def study_stop(request, pk: int):
    study = _visible_study(request, pk)
    if not can_edit(request.user, study.project):
        raise PermissionDenied(_("Only owners and maintainers of the team can stop studies."))
    if stop_study(study):
        messages.success(request, _("Study “%(name)s” is stopping: no new trial starts, and its running trials "
                                    "are cancelled.") % {"name": study.name})
    else:
        messages.info(request, _("Study “%(name)s” had already ended; nothing was stopped.") % {"name": study.name})
    return redirect(study)


@login_required
@require_POST
def study_promote(request, pk: int):
    """Create a training run with the parameters of the chosen trial (by default the best) and open its page."""
    study = _visible_study(request, pk)
    if not can_edit(request.user, study.project):
        raise PermissionDenied(_("Only owners and maintainers of the team can promote trials."))
    form = PromoteForm(request.POST, study=study)
    if form.is_valid():
        try:
            run = promote(study, trial=form.chosen_trial, epochs=form.cleaned_data["epochs"], user=request.user)
        except ConfigError as exc:
            target = "epochs" if exc.field == "epochs" else "trial"
            form.add_error(target, f"{exc.field}: {exc.translate(_)}")
        else:
            number = form.chosen_trial.number if form.chosen_trial else study.best_trial.number
            messages.success(request, _("Run “%(name)s” is queued with the parameters of trial %(number)s.")
                             % {"name": run, "number": number})
            return redirect(run)
    return render(request, "tuning/study_detail.html", _detail_context(request, study, promote_form=form))


# ---- The project's study table ---------------------------------------------------------


@login_required
@require_GET
def study_row(request, pk: int):
    """Render one row of the project's study table, for a study created after the page loaded."""
    study = _visible_study(request, pk)
    return render(request, "tuning/_study_row.html", {"study": study})


@login_required
@require_GET
def project_study_rows(request, project_pk: int):
    """Render the rows of the project's study table, newest first, to reload it after a dropped connection."""
    project = get_object_or_404(Project, pk=project_pk)
    if not can_view(request.user, project):
        raise Http404
    studies = project_studies(project)
    return render(request, "tuning/_study_rows.html", {"studies": studies, "can_edit": can_edit(request.user, project)})


def project_studies(project: Project) -> list[Study]:
    return list(project.studies.select_related("dataset", "best_trial").order_by("-created_at")[:PROJECT_PAGE_STUDIES])
