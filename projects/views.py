"""Web pages of projects and datasets: the project list, a project, a dataset, the upload form.

Outsiders get 404 for a project they cannot see, so project ids cannot be
probed. Viewers see everything but get 403 where a change is requested.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from projects import services
from projects.forms import DatasetUploadForm, ProjectForm
from projects.models import Dataset, Project
from projects.permissions import can_edit, can_view, visible_projects
from training.views import run_status_labels

# The project page lists at most this many runs, newest first.
PROJECT_PAGE_RUNS = 100


def _visible_project(request, pk: int) -> Project:
    project = get_object_or_404(Project.objects.select_related("team"), pk=pk)
    if not can_view(request.user, project):
        raise Http404
    return project


@login_required
def home(request):
    form = ProjectForm(request.POST if request.method == "POST" else None, user=request.user)
    if form.is_bound and form.is_valid():
        try:
            project = services.create_project(form.cleaned_data["team"], form.cleaned_data["name"],
                                              form.cleaned_data["description"], request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Project %(name)s created.") % {"name": project.name})
            return redirect(project)

    projects = (
        visible_projects(request.user).select_related("team")
        .annotate(num_datasets=Count("datasets", distinct=True), num_runs=Count("runs", distinct=True))
        .order_by("team__name", "name")
    )
    return render(request, "projects/home.html", {
        "projects": projects,
        "form": form,
        "can_create": form.fields["team"].queryset.exists(),
    })


@login_required
def project_detail(request, pk: int):
    project = _visible_project(request, pk)
    datasets = project.datasets.annotate(num_runs=Count("runs")).order_by("-created_at")
    runs = project.runs.select_related("dataset").order_by("-created_at")[:PROJECT_PAGE_RUNS]
    return render(request, "projects/project_detail.html", {
        "project": project,
        "datasets": datasets,
        "runs": runs,
        "can_edit": can_edit(request.user, project),
        "run_status_labels": run_status_labels(),
    })


@login_required
def dataset_upload(request, project_pk: int):
    project = _visible_project(request, project_pk)
    if not can_edit(request.user, project):
        raise PermissionDenied(_("Only owners and maintainers of the team can upload datasets."))

    if request.method == "POST":
        form = DatasetUploadForm(request.POST, request.FILES)
    else:
        form = DatasetUploadForm()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            dataset = services.create_dataset(project, data["file"], data["name"], fmt=data["format"] or None,
                                              task=data["task"], target_column=data["target_column"],
                                              user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Dataset %(name)s uploaded: %(rows)d rows.")
                             % {"name": dataset.name, "rows": dataset.num_rows})
            return redirect(dataset)
    return render(request, "projects/dataset_upload.html", {"project": project, "form": form})


@login_required
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset.objects.select_related("project__team"), pk=pk)
    if not can_view(request.user, dataset.project):
        raise Http404
    return render(request, "projects/dataset_detail.html", {
        "dataset": dataset,
        "project": dataset.project,
        "class_balance": _class_balance(dataset),
        "preview_columns": _preview_columns(dataset),
        "can_edit": can_edit(request.user, dataset.project),
    })


def _class_balance(dataset: Dataset) -> list[dict]:
    """Return one bar per class: name, count, share of all rows and width relative to the largest class."""
    counts = [(name, int(dataset.class_counts.get(name, 0))) for name in dataset.class_names]
    largest = max((count for _name, count in counts), default=0)
    total = sum(count for _name, count in counts)
    return [
        {
            "name": name,
            "count": count,
            "percent": 100 * count / total if total else 0,
            "width": 100 * count / largest if largest else 0,
        }
        for name, count in counts
    ]


def _preview_columns(dataset: Dataset) -> list[str]:
    """Return the header of the table preview: the features shown, then the target."""
    if dataset.format == "images" or not dataset.preview:
        return []
    shown = len(dataset.preview[0]) - 1
    features = dataset.feature_names[:shown] or [f"#{i}" for i in range(1, shown + 1)]
    return [*features, dataset.target_column or _("target")]
