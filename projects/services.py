"""Verbs of the projects app: create projects and datasets, and set up the demo project.

Views, the API, the CLI and `studio up` call these. They check permissions
and raise ValidationError (keyed by the field at fault) or PermissionDenied.
"""

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from projects.engine.datasets import BUILTIN, EXTENSIONS, DatasetError, format_for_filename, inspect, write_builtin_npz
from projects.models import Dataset, DatasetFormat, Membership, Project, Role, Task, Team
from projects.permissions import can_edit

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
DEMO_TEAM = "demo"
DEMO_PROJECT = "demo"


def editable_teams(user) -> QuerySet:
    """Return the teams in which `user` may create projects: those they own or maintain, or every team for staff."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user.is_staff:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role__in=[Role.OWNER, Role.MAINTAINER])


def create_project(team: Team, name: str, description: str, user) -> Project:
    """Create a project in `team`. Only the team's owners and maintainers, and staff, may."""
    if not editable_teams(user).filter(pk=team.pk).exists():
        raise PermissionDenied(_("Only owners and maintainers of team %(team)s can create projects in it.")
                               % {"team": team.name})
    name = name.strip()
    if not name:
        raise ValidationError({"name": ValidationError(_("Enter a project name."), code="required")})
    duplicate = ValidationError({"name": ValidationError(
        _("Team %(team)s already has a project named %(name)s.") % {"team": team.name, "name": name}, code="unique",
    )})
    if Project.objects.filter(team=team, name=name).exists():
        raise duplicate

    try:
        with transaction.atomic():
            project = Project.objects.create(team=team, name=name, description=description.strip())
    except IntegrityError:
        raise duplicate from None
    logger.info("project %s (%s) created in team %s by %s", project.pk, name, team.name, user)
    return project


def create_dataset(project: Project, uploaded_file, name: str, fmt: str | None = None,
                   task: str = Task.CLASSIFICATION, target_column: str = "", user=None) -> Dataset:
    """Validate an uploaded file and store it as a dataset of `project`.

    `uploaded_file` is a Django File (an upload, or File(open(...))). The bytes
    go to a temporary file under STUDIO_HOME/tmp while their SHA-256 is
    computed, are validated, then move to STUDIO_HOME/datasets/<sha[:2]>/<sha>.<ext>
    where equal uploads share one file. A rejected upload leaves no row, no
    stored file and no temporary file behind.
    """
    if user is not None and not can_edit(user, project):
        raise PermissionDenied(_("Only owners and maintainers can upload datasets to %(project)s.")
                               % {"project": project.name})
    filename = Path(uploaded_file.name or "").name
    name = (name or "").strip() or Path(filename).stem
    fmt = _resolve_format(fmt, filename)
    if task not in Task.values:
        raise _field_error("task", _("Unknown task %(task)s: choose classification or regression.") % {"task": task},
                           "invalid_choice")
    _check_name(project, name)

    temp_path, sha256, size = _receive(uploaded_file, filename, EXTENSIONS[fmt])
    return _store(project, temp_path, sha256, size, filename=filename, name=name, fmt=fmt, task=task,
                  target_column=target_column.strip(), user=user, builtin=False)


def ensure_demo_project(user) -> Project:
    """Create, once, the team and project "demo" with scikit-learn's digits, wine and breast_cancer.

    `user` joins the team as its owner unless already a member. Calling it
    again adds only what is missing.
    """
    with transaction.atomic():
        team, _created = Team.objects.get_or_create(name=DEMO_TEAM)
        Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.OWNER})
        project, _created = Project.objects.get_or_create(
            team=team, name=DEMO_PROJECT,
            defaults={"description": _("Built-in datasets from scikit-learn to try the studio with.")},
        )

    for name in BUILTIN:
        if not project.datasets.filter(name=name).exists():
            _create_builtin_dataset(project, name, user)
    return project


def _create_builtin_dataset(project: Project, name: str, user) -> Dataset:
    handle, raw_path = tempfile.mkstemp(dir=_temp_folder(), prefix=f"builtin-{name}-", suffix=".npz")
    os.close(handle)
    temp_path = Path(raw_path)
    try:
        write_builtin_npz(name, temp_path)
        sha256 = hashlib.sha256(temp_path.read_bytes()).hexdigest()
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return _store(project, temp_path, sha256, temp_path.stat().st_size, filename=f"{name}.npz", name=name,
                  fmt=DatasetFormat.NPZ, task=Task.CLASSIFICATION, target_column="", user=user, builtin=True)


def _resolve_format(fmt: str | None, filename: str) -> str:
    if fmt:
        if fmt not in DatasetFormat.values:
            raise _field_error("format", _("Unknown format %(format)s: choose csv, npz or images.") % {"format": fmt},
                               "invalid_choice")
        return fmt
    inferred = format_for_filename(filename)
    if inferred is None:
        raise _field_error(
            "format",
            _("Cannot tell the format of %(file)s from its extension: name it .csv, .npz or .zip, or choose a "
              "format.") % {"file": filename or _("the upload")},
            "unknown_format",
        )
    return inferred


def _check_name(project: Project, name: str) -> None:
    max_length = Dataset._meta.get_field("name").max_length
    if not name:
        raise _field_error("name", _("Enter a dataset name."), "required")
    if len(name) > max_length:
        raise _field_error("name", _("A dataset name has at most %(max)d characters; this one has %(length)d.")
                           % {"max": max_length, "length": len(name)}, "max_length")
    if project.datasets.filter(name=name).exists():
        raise _duplicate_name(project, name)


def _duplicate_name(project: Project, name: str) -> ValidationError:
    return _field_error("name", _("Project %(project)s already has a dataset named %(name)s; choose another name.")
                        % {"project": project.name, "name": name}, "unique")


def _field_error(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _temp_folder() -> Path:
    folder = settings.STUDIO_HOME / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _receive(uploaded_file, filename: str, extension: str) -> tuple[Path, str, int]:
    """Stream the upload to a temporary file under the size limit. Returns (path, sha256, size)."""
    limit = settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024
    too_large = _field_error("file", _("%(file)s is larger than the maximum upload of %(limit)d MB.")
                             % {"file": filename, "limit": settings.DATASET_MAX_UPLOAD_MB}, "too_large")
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise too_large

    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(dir=_temp_folder(), prefix="upload-", suffix=f".{extension}", delete=False)
    temp_path = Path(handle.name)
    try:
        with handle:
            for chunk in uploaded_file.chunks(CHUNK_BYTES):
                # The declared size can be missing or wrong, so count the bytes as they arrive.
                size += len(chunk)
                if size > limit:
                    raise too_large
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return temp_path, digest.hexdigest(), size


def _store(project: Project, temp_path: Path, sha256: str, size: int, *, filename: str, name: str, fmt: str,
           task: str, target_column: str, user, builtin: bool) -> Dataset:
    """Validate the temporary file, then create the row and move the file into place.

    The temporary file is removed in every case.
    """
    relative = Path("datasets") / sha256[:2] / f"{sha256}.{EXTENSIONS[fmt]}"
    final_path = settings.STUDIO_HOME / relative
    created_file = False
    try:
        summary = _inspect(temp_path, fmt, filename, target_column, task)
        with transaction.atomic():
            dataset = Dataset.objects.create(
                project=project, name=name, format=fmt, task=task, target_column=summary.target_column,
                sha256=sha256, file_path=str(relative), size_bytes=size, num_rows=summary.num_rows,
                num_features=summary.num_features, input_shape=summary.input_shape, num_classes=summary.num_classes,
                class_names=summary.class_names, class_counts=summary.class_counts,
                feature_names=summary.feature_names, preview=summary.preview, builtin=builtin,
                created_by=user if user is not None and user.is_authenticated else None,
            )
            created_file = _move_into_place(temp_path, final_path)
    except IntegrityError:
        raise _duplicate_name(project, name) from None
    except BaseException:
        # Only a failed commit gets here with the file moved. Keep it if another row uses the same bytes.
        if created_file and not Dataset.objects.filter(file_path=str(relative)).exists():
            final_path.unlink(missing_ok=True)
        raise
    finally:
        temp_path.unlink(missing_ok=True)

    logger.info("dataset %s (%s) stored in project %s: %s %s, %d rows, sha256 %s", dataset.pk, name, project.pk,
                fmt, task, summary.num_rows, sha256)
    return dataset


def _inspect(path: Path, fmt: str, filename: str, target_column: str, task: str):
    try:
        return inspect(path, fmt, filename, target_column, task)
    except DatasetError as exc:
        raise _field_error(exc.field, exc.translate(_), exc.code) from None


def _move_into_place(temp_path: Path, final_path: Path) -> bool:
    """Move the validated file to its content-addressed path. Returns False when those bytes are already stored."""
    if final_path.exists():
        return False
    final_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp_path, final_path)
    return True
