import math

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    # Stopped early by a hyper-parameter search because it trailed the other trials.
    PRUNED = "pruned", _("Pruned")


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED)


class Run(models.Model):
    """A training run: the database row is the truth about its state.

    The Celery task id is only a pointer; workers change `status` through
    conditional updates in training.services so an operator's cancel is never
    overwritten by a late progress write.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="runs",
                                verbose_name=_("project"))
    dataset = models.ForeignKey("projects.Dataset", on_delete=models.PROTECT, related_name="runs",
                                verbose_name=_("dataset"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   verbose_name=_("created by"))
    config = models.JSONField(_("config"), default=dict)
    status = models.CharField(_("status"), max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    error = models.TextField(_("error"), blank=True)
    diverged = models.BooleanField(_("diverged"), default=False, help_text=_("A loss or metric turned NaN or infinite."))
    log = models.TextField(_("log"), blank=True)

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)

    queue = models.CharField(_("queue"), max_length=50, default="cpu")
    celery_task_id = models.CharField(_("Celery task id"), max_length=50, blank=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    device = models.CharField(_("device"), max_length=50, blank=True)

    epoch = models.PositiveIntegerField(_("epoch"), default=0)
    total_epochs = models.PositiveIntegerField(_("epochs"), default=0)
    step = models.PositiveIntegerField(_("step"), default=0)
    total_steps = models.PositiveIntegerField(_("total steps"), default=0)
    # Highest metric sequence number stored; websocket clients resume after it.
    last_seq = models.PositiveIntegerField(_("last sequence number"), default=0)

    summary = models.JSONField(_("final metrics"), default=dict, blank=True)
    confusion_matrix = models.JSONField(_("confusion matrix"), default=list, blank=True)
    mlflow_run_id = models.CharField(_("MLflow run id"), max_length=64, blank=True)
    mlflow_experiment_id = models.CharField(_("MLflow experiment id"), max_length=64, blank=True)
    # Extra tags for the run's MLflow run, e.g. the parent run of a study's trial.
    mlflow_tags = models.JSONField(_("MLflow tags"), default=dict, blank=True)

    class Meta:
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat")]

    def __str__(self):
        return self.name or f"run {self.pk}"

    def get_absolute_url(self):
        return reverse("run-detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def main_metric_key(self) -> str:
        return "val/accuracy" if self.config.get("task", "classification") == "classification" else "val/loss"

    @property
    def main_metric(self) -> float | None:
        return self.summary.get(self.main_metric_key)

    @property
    def eta_seconds(self) -> float | None:
        elapsed = self.duration_seconds
        if self.status != RunStatus.RUNNING or not elapsed or not self.step or not self.total_steps:
            return None
        return elapsed * (self.total_steps - self.step) / self.step

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    def checkpoint_dir(self):
        return settings.STUDIO_HOME / "runs" / str(self.pk)


class Metric(models.Model):
    """One reported value of one metric of a run at one step.

    `seq` numbers a run's points in the order they were stored, so a client
    that reconnects asks for what came after the last seq it saw. A NaN or
    infinite value is stored with `value` NULL and `nonfinite` saying which,
    because SQLite turns NaN into NULL and JSON has no NaN.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics", verbose_name=_("run"))
    seq = models.PositiveIntegerField(_("sequence number"))
    key = models.CharField(_("key"), max_length=100)
    step = models.PositiveIntegerField(_("step"))
    epoch = models.PositiveIntegerField(_("epoch"), default=0)
    value = models.FloatField(_("value"), null=True)
    nonfinite = models.CharField(_("non-finite value"), max_length=4, blank=True,
                                 choices=[("nan", "NaN"), ("inf", "+inf"), ("-inf", "-inf")])
    # Wall-clock time (Unix seconds) at which the engine reported the value.
    reported_at = models.FloatField(_("reported at"))

    class Meta:
        verbose_name = _("metric")
        verbose_name_plural = _("metrics")
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key", "step"], name="unique_metric_point"),
            models.UniqueConstraint(fields=["run", "seq"], name="unique_metric_seq"),
        ]

    def __str__(self):
        return f"{self.key}@{self.step}={self.display_value}"

    @property
    def display_value(self):
        return self.value if not self.nonfinite else self.nonfinite

    @staticmethod
    def split_value(value: float) -> tuple[float | None, str]:
        """Return (value, nonfinite) as stored for a raw float."""
        if math.isnan(value):
            return None, "nan"
        if math.isinf(value):
            return None, "inf" if value > 0 else "-inf"
        return value, ""
