from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class StudyState(models.TextChoices):
    RUNNING = "running", _("Running")
    # Stop was asked; its running trials are being cancelled.
    STOPPING = "stopping", _("Stopping")
    FINISHED = "finished", pgettext_lazy("study state", "Finished")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")


ACTIVE_STUDY_STATES = (StudyState.RUNNING, StudyState.STOPPING)


class TrialState(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETE = "complete", _("Complete")
    PRUNED = "pruned", _("Pruned")
    FAILED = "failed", _("Failed")


class Study(models.Model):
    """A hyper-parameter search: the trials are training runs that Optuna's sampler proposes.

    Optuna's RDB storage keeps what the sampler learns from; this row keeps
    what the studio shows and the two counters that decide, without a lock,
    whether another trial may start: `trials_started` grows only through a
    conditional update that checks the budget and the parallel limit.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="studies",
                                verbose_name=_("project"))
    dataset = models.ForeignKey("projects.Dataset", on_delete=models.PROTECT, related_name="studies",
                                verbose_name=_("dataset"))
    name = models.CharField(_("name"), max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   verbose_name=_("created by"))
    base_config = models.JSONField(_("base run config"), default=dict)
    space = models.JSONField(_("search space"), default=dict)
    # [{"metric": "val/accuracy", "direction": "maximize"}, ...]
    objectives = models.JSONField(_("objectives"), default=list)
    sampler = models.CharField(_("sampler"), max_length=20, default="tpe")
    pruner = models.CharField(_("pruner"), max_length=20, default="median")
    seed = models.PositiveIntegerField(_("seed"), default=0)
    n_trials = models.PositiveIntegerField(_("trials"), default=20)
    parallel = models.PositiveIntegerField(_("parallel trials"), default=2)
    timeout_seconds = models.PositiveIntegerField(_("time budget (seconds)"), null=True, blank=True,
                                                  help_text=_("No new trial starts after this; empty for none."))

    state = models.CharField(_("state"), max_length=20, choices=StudyState.choices, default=StudyState.RUNNING,
                             db_index=True)
    error = models.TextField(_("error"), blank=True)
    optuna_name = models.CharField(_("Optuna study name"), max_length=100, unique=True)
    trials_started = models.PositiveIntegerField(_("trials started"), default=0)
    trials_finished = models.PositiveIntegerField(_("trials finished"), default=0)
    # The best trial's values, in objective order; for several objectives, the best of the first.
    best_values = models.JSONField(_("best values"), default=list, blank=True)
    best_trial = models.ForeignKey("Trial", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   verbose_name=_("best trial"))
    mlflow_run_id = models.CharField(_("MLflow parent run id"), max_length=64, blank=True)
    mlflow_experiment_id = models.CharField(_("MLflow experiment id"), max_length=64, blank=True)

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("study-detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STUDY_STATES

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def deadline(self):
        if not self.timeout_seconds:
            return None
        return self.created_at + timezone.timedelta(seconds=self.timeout_seconds)

    @property
    def progress(self) -> float:
        return min(1.0, self.trials_finished / self.n_trials) if self.n_trials else 0.0

    @property
    def duration_seconds(self) -> float:
        return ((self.finished_at or timezone.now()) - self.created_at).total_seconds()

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far: finished trials per second, over the trials still to finish."""
        if not self.is_active or not self.trials_finished:
            return None
        left = self.n_trials - self.trials_finished
        eta = self.duration_seconds * left / self.trials_finished
        if self.deadline:
            eta = min(eta, max(0.0, (self.deadline - timezone.now()).total_seconds()))
        return eta

    @property
    def best_value(self):
        return self.best_values[0] if self.best_values else None


class Trial(models.Model):
    """One point of a study's search, trained as one run."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="trials", verbose_name=_("study"))
    number = models.PositiveIntegerField(_("number"))
    optuna_trial_id = models.PositiveIntegerField(_("Optuna trial id"))
    run = models.OneToOneField("training.Run", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="trial", verbose_name=_("run"))
    state = models.CharField(_("state"), max_length=20, choices=TrialState.choices, default=TrialState.RUNNING,
                             db_index=True)
    params = models.JSONField(_("parameters"), default=dict)
    values = models.JSONField(_("values"), default=list, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("trial")
        verbose_name_plural = _("trials")
        ordering = ["study", "number"]
        constraints = [models.UniqueConstraint(fields=["study", "number"], name="unique_trial_number")]

    def __str__(self):
        return f"{self.study} #{self.number}"

    @property
    def value(self):
        return self.values[0] if self.values else None

    @property
    def duration_seconds(self) -> float:
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
