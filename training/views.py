"""Web pages of runs: create one, follow it live, cancel it.

Pages read the Run row. The live parts (curves, progress) come over the
websocket in training.consumers, and the log and the final results come
through the small endpoints below.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from projects.models import Project
from projects.permissions import can_edit, can_view
from training import events
from training.engine.config import ConfigError
from training.forms import RunForm, config_json_text, is_image_dataset, suggested_config
from training.models import Run, RunStatus
from training.services import cancel_run, create_run


def _visible_run(request, pk: int) -> Run:
    """Return the run if the user may see it; 404 otherwise, so outsiders cannot probe run ids."""
    run = get_object_or_404(Run.objects.select_related("project", "dataset"), pk=pk)
    if not can_view(request.user, run.project):
        raise Http404
    return run


def _editable_project(request, pk: int) -> Project:
    project = get_object_or_404(Project, pk=pk)
    if not can_view(request.user, project):
        raise Http404
    if not can_edit(request.user, project):
        raise PermissionDenied(_("Only owners and maintainers of the team can start runs."))
    return project


def mlflow_run_url(run: Run) -> str:
    """Return the run's page in the MLflow UI, or "" when no UI is configured or the run has no MLflow run."""
    if not settings.MLFLOW_UI_URL or not run.mlflow_run_id or not run.mlflow_experiment_id:
        return ""
    base = settings.MLFLOW_UI_URL.rstrip("/")
    return f"{base}/#/experiments/{run.mlflow_experiment_id}/runs/{run.mlflow_run_id}"


@login_required
def run_create(request, project_pk: int):
    project = _editable_project(request, project_pk)
    datasets = list(project.datasets.order_by("-created_at"))
    if request.method == "POST":
        form = RunForm(request.POST, project=project)
        if form.is_valid():
            run = _create_from_form(request, form)
            if run is not None:
                messages.success(request, _("Run “%(name)s” is queued.") % {"name": run})
                return redirect(run)
    else:
        chosen = _dataset_from_query(request, datasets)
        form = RunForm(project=project, initial=RunForm.initial_for(chosen))

    dataset_info = {
        str(dataset.pk): {"image": is_image_dataset(dataset), "defaults": suggested_config(dataset),
                          "defaults_json": config_json_text(suggested_config(dataset))}
        for dataset in datasets
    }
    return render(request, "training/run_create.html",
                  {"project": project, "form": form, "datasets": datasets, "dataset_info": dataset_info})


def _dataset_from_query(request, datasets: list):
    """Return the dataset named by ?dataset=ID, else the newest one, else None."""
    wanted = request.GET.get("dataset", "")
    for dataset in datasets:
        if str(dataset.pk) == wanted:
            return dataset
    return datasets[0] if datasets else None


def _create_from_form(request, form: RunForm) -> Run | None:
    try:
        return create_run(form.project, form.cleaned_data["dataset"], form.config, user=request.user,
                          name=form.cleaned_data["name"])
    except ConfigError as exc:
        form.add_config_error(exc)
        return None


@login_required
def run_detail(request, pk: int):
    run = _visible_run(request, pk)
    config_rows = sorted(run.config.items())
    live = {
        "run_id": run.pk,
        "task": run.config.get("task", "classification"),
        "ws_path": f"/ws/runs/{run.pk}/",
        "log_url": reverse("run-log", args=[run.pk]),
        "result_url": reverse("run-result", args=[run.pk]),
        "log_offset": len(run.log),
        "state": events.run_state(run),
        "labels": _live_labels(),
    }
    return render(request, "training/run_detail.html", {
        "run": run, "project": run.project, "dataset": run.dataset, "config_rows": config_rows,
        "can_edit": can_edit(request.user, run.project), "mlflow_url": mlflow_run_url(run), "live": live,
        "progress_percent": round(run.progress * 100),
        **_result_context(run),
    })


def _live_labels() -> dict:
    """Return the words that static/js/run.js shows, translated."""
    return {
        "step": _("step"),
        "live": _("live"),
        "reconnecting": _("reconnecting…"),
        "forbidden": _("You no longer have access to this run."),
        "notFound": _("This run no longer exists."),
        # %(key)s, %(value)s and %(step)s are filled in by the script.
        "nonfinite": _("%(key)s was %(value)s at step %(step)s; the curve has a gap there."),
        "statuses": run_status_labels(),
    }


def run_status_labels() -> dict:
    """Return each run status's label in the request's language.

    Live run.state messages carry status_display in the language of the
    process that sent them (often a worker's English), so pages show these instead.
    """
    return {value: str(label) for value, label in RunStatus.choices}


def _result_context(run: Run) -> dict:
    summary_rows = sorted((key, value) for key, value in run.summary.items())
    class_names = list(run.dataset.class_names or [])
    matrix = run.confusion_matrix or []
    if len(class_names) != len(matrix):
        class_names = [str(index) for index in range(len(matrix))]
    return {"summary_rows": summary_rows, "confusion": {"z": matrix, "labels": class_names} if matrix else None}


@login_required
@require_GET
def run_result(request, pk: int):
    """Render the parts of the run page that change when a run finishes, for the page to swap in.

    They are the summary, confusion matrix and error (#run-result) and the run's times and MLflow link (#run-info).
    """
    run = _visible_run(request, pk)
    return render(request, "training/_run_refresh.html", {
        "run": run, "dataset": run.dataset, "mlflow_url": mlflow_run_url(run), **_result_context(run)})


@login_required
@require_GET
def run_log(request, pk: int):
    """Return the run's log from character `offset` on, so the page appends only what is new."""
    run = _visible_run(request, pk)
    try:
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        offset = 0
    log = run.log
    if offset > len(log):
        # The log never shrinks, but a client with a stale offset gets all of it again.
        offset = 0
    return JsonResponse({"text": log[offset:], "offset": len(log), "reset": offset == 0,
                         "active": run.is_active})


@login_required
@require_GET
def run_row(request, pk: int):
    """Render one row of the project's run table, for a run created after the page loaded."""
    run = _visible_run(request, pk)
    return render(request, "training/_run_row.html", {"run": run})


@login_required
@require_GET
def project_run_rows(request, project_pk: int):
    """Render the rows of the project's run table, newest first, to reload it after a dropped connection."""
    project = get_object_or_404(Project, pk=project_pk)
    if not can_view(request.user, project):
        raise Http404
    runs = project.runs.select_related("dataset").order_by("-created_at")
    return render(request, "training/_run_rows.html", {"runs": runs, "can_edit": can_edit(request.user, project)})


@login_required
@require_POST
def run_cancel(request, pk: int):
    run = _visible_run(request, pk)
    if not can_edit(request.user, run.project):
        raise PermissionDenied(_("Only owners and maintainers of the team can cancel runs."))
    if cancel_run(run):
        messages.success(request, _("Run “%(name)s” was cancelled.") % {"name": run})
    else:
        messages.info(request, _("Run “%(name)s” had already finished; nothing was cancelled.") % {"name": run})
    return redirect(run)
