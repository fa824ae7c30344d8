"""Serializers of the runs API: a run's JSON, the create request and the query parameters."""

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from projects.serializers import ProjectDatasetRequest
from training.models import Run, RunStatus

# Bounds of ?limit= on the metrics endpoint, in points.
METRICS_DEFAULT_LIMIT = 5000
METRICS_MAX_LIMIT = 20000


def run_page_path(run: Run) -> str:
    """Return the path of the run's web page."""
    try:
        return reverse("run-detail", args=[run.pk])
    except NoReverseMatch:
        # Fall back to the path the web pages use when they are not routed,
        # e.g. in a deployment that serves only the API.
        return f"/runs/{run.pk}/"


def mlflow_ui_url(run: Run) -> str | None:
    """Return the run's page in the MLflow UI, or None without a UI address or an MLflow run."""
    base = settings.MLFLOW_UI_URL
    if not base or not run.mlflow_run_id or not run.mlflow_experiment_id:
        return None
    return f"{base.rstrip('/')}/#/experiments/{run.mlflow_experiment_id}/runs/{run.mlflow_run_id}"


class RunSerializer(serializers.ModelSerializer):
    """A run as the API returns it, with every field read-only."""

    project_name = serializers.CharField(source="project.name", read_only=True)
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    progress = serializers.FloatField(read_only=True, help_text=_("Steps done over total steps, from 0 to 1."))
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True,
                                         help_text=_("Estimated seconds left; null unless the run is running."))
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True,
                                              help_text=_("Seconds since the run started; null before it starts."))
    main_metric_key = serializers.CharField(read_only=True)
    main_metric = serializers.FloatField(read_only=True, allow_null=True)
    url = serializers.SerializerMethodField(help_text=_("Absolute address of the run's web page."))
    mlflow_url = serializers.SerializerMethodField(help_text=_("The run in the MLflow UI; null when unknown."))

    class Meta:
        model = Run
        fields = [
            "id", "project", "project_name", "dataset", "dataset_name", "name", "status", "status_display",
            "config", "epoch", "total_epochs", "step", "total_steps", "progress", "eta_seconds",
            "duration_seconds", "last_seq", "device", "attempt", "summary", "main_metric_key", "main_metric",
            "confusion_matrix", "error", "diverged", "mlflow_run_id", "mlflow_experiment_id",
            "created_at", "started_at", "finished_at", "url", "mlflow_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, run: Run) -> str:
        path = run_page_path(run)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_mlflow_url(self, run: Run) -> str | None:
        return mlflow_ui_url(run)


class RunCreateSerializer(ProjectDatasetRequest):
    """The body of POST /api/v1/runs/.

    This checks the request's shape and who may start runs.
    training.services.create_run validates the config against the dataset.
    """

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    config = serializers.DictField(
        required=False, default=dict,
        help_text=_("Training parameters (model, lr, epochs, batch_size, ...); missing ones take their defaults."),
    )


class RunListQuerySerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, help_text=_("Only runs of this project."))
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False,
                                     help_text=_("Only runs in this status."))


class MetricsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0,
                                     help_text=_("Return points whose sequence number is greater than this."))
    keys = serializers.CharField(required=False, default="", allow_blank=True,
                                 help_text=_("Comma-separated metric keys, e.g. train/loss,val/accuracy. "
                                             "Empty returns every key."))
    limit = serializers.IntegerField(required=False, default=METRICS_DEFAULT_LIMIT, min_value=1,
                                     max_value=METRICS_MAX_LIMIT, help_text=_("Maximum number of points returned."))

    def validate_keys(self, value: str) -> list[str]:
        return [key.strip() for key in value.split(",") if key.strip()]


class MetricPointSerializer(serializers.Serializer):
    """One stored metric value, as training.events.metric_point builds it."""

    seq = serializers.IntegerField()
    key = serializers.CharField()
    step = serializers.IntegerField()
    epoch = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True, help_text=_("Null when the value is NaN or infinite."))
    nonfinite = serializers.ChoiceField(choices=[("", "finite"), ("nan", "NaN"), ("inf", "+inf"), ("-inf", "-inf")],
                                        help_text=_("Which non-finite value was reported; empty when finite."))
    t = serializers.FloatField(help_text=_("When the engine reported the value, in Unix seconds."))


class MetricsPageSerializer(serializers.Serializer):
    points = MetricPointSerializer(many=True)
    last_seq = serializers.IntegerField(
        help_text=_("Sequence number of the last point returned (or `after` when none); pass it as `after` next."))
    has_more = serializers.BooleanField(help_text=_("True when more points matched than `limit`."))
