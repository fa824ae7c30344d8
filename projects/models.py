from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _


class Team(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams",
                                     verbose_name=_("members"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    # Ordered from most to least powerful; see Membership.can_edit.
    OWNER = "owner", _("Owner")
    MAINTAINER = "maintainer", _("Maintainer")
    VIEWER = "viewer", _("Viewer")


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("team"))
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships",
                             verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_member")]

    def __str__(self):
        return _("%(user)s in %(team)s (%(role)s)") % {"user": self.user, "team": self.team,
                                                         "role": self.get_role_display()}

    @property
    def can_edit(self) -> bool:
        return self.role in (Role.OWNER, Role.MAINTAINER)


class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects", verbose_name=_("team"))
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("project")
        verbose_name_plural = _("projects")
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_project_name_per_team")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("project-detail", args=[self.pk])


class DatasetFormat(models.TextChoices):
    CSV = "csv", _("CSV table")
    NPZ = "npz", _("NumPy arrays (NPZ)")
    IMAGES = "images", _("ZIP of image folders")


class Task(models.TextChoices):
    CLASSIFICATION = "classification", _("Classification")
    REGRESSION = "regression", _("Regression")


class Dataset(models.Model):
    """An uploaded data set, validated before it is stored.

    The file lives under STUDIO_HOME/datasets/ named by its sha256, so the same
    bytes uploaded twice are stored once; the summary fields are computed at
    validation time so pages never reread the file.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets",
                                verbose_name=_("project"))
    name = models.CharField(_("name"), max_length=200)
    format = models.CharField(_("format"), max_length=10, choices=DatasetFormat.choices)
    task = models.CharField(_("task"), max_length=20, choices=Task.choices, default=Task.CLASSIFICATION)
    target_column = models.CharField(_("target column"), max_length=200, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, db_index=True)
    file_path = models.CharField(_("stored file"), max_length=500, help_text=_("Relative to the data folder."))
    size_bytes = models.BigIntegerField(_("size in bytes"))
    num_rows = models.PositiveIntegerField(_("rows"))
    num_features = models.PositiveIntegerField(_("features"))
    # Shape of one example, e.g. [64] for a table or [1, 8, 8] for images.
    input_shape = models.JSONField(_("input shape"), default=list)
    num_classes = models.PositiveIntegerField(_("classes"), null=True, blank=True)
    class_names = models.JSONField(_("class names"), default=list, blank=True)
    class_counts = models.JSONField(_("class counts"), default=dict, blank=True)
    feature_names = models.JSONField(_("feature names"), default=list, blank=True)
    preview = models.JSONField(_("preview rows"), default=list, blank=True)
    builtin = models.BooleanField(_("built in"), default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("dataset")
        verbose_name_plural = _("datasets")
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_dataset_name_per_project")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("dataset-detail", args=[self.pk])

    @property
    def absolute_path(self):
        return settings.STUDIO_HOME / self.file_path
