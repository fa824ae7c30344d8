"""Serializers of the studies API."""

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from projects.serializers import ProjectDatasetRequest
from tuning.engine.search import PRUNERS, SAMPLERS
from tuning.models import Study, StudyState, Trial, TrialState


def _page(name: str, pk: int, fallback: str) -> str:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return fallback


class ObjectiveSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text=_("val/accuracy, val/loss, val/rmse, val/r2, model/parameters or "
                                               "model/latency_ms."))
    direction = serializers.ChoiceField(choices=["maximize", "minimize"], required=False,
                                        help_text=_("Defaults to the metric's better side."))


class TrialSerializer(serializers.ModelSerializer):
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    value = serializers.FloatField(read_only=True, allow_null=True,
                                   help_text=_("The first objective's value; null unless complete."))
    duration_seconds = serializers.FloatField(read_only=True)
    run_status = serializers.CharField(source="run.status", read_only=True, allow_null=True, default=None)
    run_url = serializers.SerializerMethodField(help_text=_("Absolute address of the trial's run page."))

    class Meta:
        model = Trial
        fields = ["id", "study", "number", "state", "state_display", "params", "values", "value", "reason", "run",
                  "run_status", "run_url", "started_at", "finished_at", "duration_seconds"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_run_url(self, trial: Trial) -> str | None:
        if trial.run_id is None:
            return None
        path = _page("run-detail", trial.run_id, f"/runs/{trial.run_id}/")
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class StudySerializer(serializers.ModelSerializer):
    project_name = serializers.CharField(source="project.name", read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    state_display = serializers.CharField(source="get_state_display", read_only=True)
    progress = serializers.FloatField(read_only=True, help_text=_("Trials finished over the trial budget, 0 to 1."))
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True,
                                         help_text=_("Estimated seconds left at the pace so far; null when unknown."))
    best_value = serializers.FloatField(read_only=True, allow_null=True)
    best_trial_number = serializers.IntegerField(source="best_trial.number", read_only=True, allow_null=True,
                                                 default=None)
    url = serializers.SerializerMethodField(help_text=_("Absolute address of the study's web page."))
    pareto_trials = serializers.SerializerMethodField(
        help_text=_("Numbers of the complete trials that no other trial beats on every objective."))

    class Meta:
        model = Study
        fields = ["id", "project", "project_name", "dataset", "dataset_name", "name", "state", "state_display",
                  "base_config", "space", "objectives", "sampler", "pruner", "seed", "n_trials", "parallel",
                  "timeout_seconds", "trials_started", "trials_finished", "progress", "eta_seconds", "best_value",
                  "best_values", "best_trial", "best_trial_number", "pareto_trials", "error", "mlflow_run_id",
                  "created_at", "finished_at", "url"]
        read_only_fields = fields

    def get_pareto_trials(self, study: Study) -> list[int]:
        from tuning.services import pareto_trial_numbers

        if not study.multi_objective:
            # With one objective, the front is the best trial.
            return [study.best_trial.number] if study.best_trial_id else []
        return sorted(pareto_trial_numbers(study))

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, study: Study) -> str:
        path = _page("study-detail", study.pk, f"/studies/{study.pk}/")
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class StudyCreateSerializer(ProjectDatasetRequest):
    """The body of POST /api/v1/studies/; tuning.services validates the search itself."""

    forbidden_message = _("Only owners and maintainers of project %(project)s may start studies.")

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    base_config = serializers.DictField(required=False, default=dict,
                                        help_text=_("The run config every trial starts from."))
    space = serializers.DictField(help_text=_("Parameter → {type: float|int|categorical, low, high, log, step} "
                                              "or {type: categorical, choices}."))
    objectives = ObjectiveSerializer(many=True, required=False, default=list)
    sampler = serializers.ChoiceField(choices=SAMPLERS, required=False, default="tpe")
    pruner = serializers.ChoiceField(choices=PRUNERS, required=False, default="median")
    n_trials = serializers.IntegerField(required=False, default=20, min_value=1)
    parallel = serializers.IntegerField(required=False, default=2, min_value=1)
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    seed = serializers.IntegerField(required=False, default=0, min_value=0)


class StudyListQuerySerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, help_text=_("Only studies of this project."))
    state = serializers.ChoiceField(choices=StudyState.choices, required=False,
                                    help_text=_("Only studies in this state."))


class TrialListQuerySerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=TrialState.choices, required=False,
                                    help_text=_("Only trials in this state."))


class PromoteSerializer(serializers.Serializer):
    trial = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                     help_text=_("Trial number to promote; the best trial when omitted."))
    epochs = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=10000,
                                      help_text=_("Train for this many epochs instead of the study's."))
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
