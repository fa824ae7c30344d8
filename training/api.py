"""The runs API: list, read, start and cancel training runs, and page through their metrics.

State changes go through training.services. This module checks who may do
what and turns the services' errors into API errors.
"""

import math

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from projects.permissions import can_edit, visible_projects
from studio.api_errors import Conflict, ErrorResponseSerializer
from training import events, services
from training.engine.config import ConfigError
from training.models import Metric, Run
from training.serializers import (
    MetricsPageSerializer,
    MetricsQuerySerializer,
    RunCreateSerializer,
    RunListQuerySerializer,
    RunSerializer,
)

ERRORS = ErrorResponseSerializer
NOT_FOUND = OpenApiResponse(ERRORS, description="The run does not exist or the user may not see its project.")
NOT_LOGGED_IN = OpenApiResponse(ERRORS, description="Not logged in.")
FORBIDDEN = OpenApiResponse(ERRORS, description="Not logged in, or the user is only a viewer of the project.")


def config_error(exc: ConfigError) -> ValidationError:
    """Return the 400 error for a ConfigError, on `config.<parameter>` unless it names a top-level field."""
    field = exc.field if exc.field in ("dataset", "config") else f"config.{exc.field}"
    return ValidationError({field: [f"{exc.field}: {exc.translate(_)}"]}, code="invalid")


def metric_points(run: Run, after: int, keys: list[str], limit: int) -> tuple[list[dict], bool]:
    """Return up to `limit` points of the run after seq `after`, and whether more remain."""
    rows = Metric.objects.filter(run=run, seq__gt=after)
    if keys:
        rows = rows.filter(key__in=keys)
    # Fetching one row past the limit shows whether another page exists, without a COUNT.
    rows = list(rows.order_by("seq").values_list("seq", "key", "step", "epoch", "value", "nonfinite", "reported_at")
                [: limit + 1])

    points = []
    for seq, key, step, epoch, value, nonfinite, reported_at in rows[:limit]:
        if value is not None and not math.isfinite(value):
            # A row written with a raw float keeps infinity (and NaN on PostgreSQL), which JSON cannot carry.
            value, nonfinite = Metric.split_value(value)
        points.append(events.metric_point(seq, key, step, epoch, value, nonfinite, reported_at))
    return points, len(rows) > limit


@extend_schema_view(
    list=extend_schema(
        summary="List runs",
        description="Runs of the projects the user can see, newest first.",
        parameters=[RunListQuerySerializer],
        responses={200: RunSerializer(many=True), 400: ERRORS, 403: NOT_LOGGED_IN},
    ),
    retrieve=extend_schema(summary="Read a run", responses={200: RunSerializer, 403: NOT_LOGGED_IN, 404: NOT_FOUND}),
)
class RunViewSet(viewsets.GenericViewSet):
    serializer_class = RunSerializer
    # A run's config is a nested object, which form encodings cannot carry.
    parser_classes = [JSONParser]

    def get_queryset(self):
        return (Run.objects.filter(project__in=visible_projects(self.request.user))
                .select_related("project", "dataset").order_by("-created_at", "-pk"))

    def get_object(self) -> Run:
        pk = self.kwargs["pk"]
        try:
            run = self.get_queryset().get(pk=int(pk))
        except (ValueError, Run.DoesNotExist):
            raise NotFound(_("Run %(id)s was not found.") % {"id": pk}) from None
        self.check_object_permissions(self.request, run)
        return run

    def require_edit(self, run: Run, message: str) -> None:
        if not can_edit(self.request.user, run.project):
            raise PermissionDenied(message)

    def list(self, request):
        query = RunListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        runs = self.get_queryset()
        if "project" in query.validated_data:
            runs = runs.filter(project_id=query.validated_data["project"])
        if "status" in query.validated_data:
            runs = runs.filter(status=query.validated_data["status"])

        page = self.paginate_queryset(runs)
        if page is not None:
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        return Response(self.get_serializer(runs, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Start a run",
        description="Validate the config against the dataset, store the run and queue it for a worker. "
                    "Needs the owner or maintainer role in the project.",
        request=RunCreateSerializer,
        responses={
            201: RunSerializer,
            400: OpenApiResponse(ERRORS, description="A field is invalid. An invalid training parameter is "
                                                     "reported on `config.<parameter>`."),
            403: FORBIDDEN,
        },
    )
    def create(self, request):
        payload = RunCreateSerializer(data=request.data, context=self.get_serializer_context())
        payload.is_valid(raise_exception=True)
        data = payload.validated_data

        try:
            run = services.create_run(data["project"], data["dataset"], data["config"], user=request.user,
                                      name=data["name"])
        except ConfigError as exc:
            raise config_error(exc) from None
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a run",
        operation_id="runs_cancel",
        description="Cancel a queued or running run. Needs the owner or maintainer role in the project.",
        request=None,
        responses={
            200: RunSerializer,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ERRORS, description="The run has already finished."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        self.require_edit(run, _("Only owners and maintainers of project %(project)s may cancel its runs.")
                          % {"project": run.project.name})

        if not services.cancel_run(run):
            run.refresh_from_db()
            raise Conflict(_("Run %(id)s has already finished (%(status)s), so it cannot be cancelled.")
                           % {"id": run.pk, "status": run.get_status_display()}, code="already_finished")
        return Response(self.get_serializer(run).data)

    @extend_schema(
        summary="Page through a run's metrics",
        operation_id="runs_metrics",
        description="Stored metric points in sequence order. Pass the returned `last_seq` as `after` to get "
                    "the next page. NaN and infinite values come as null with `nonfinite` naming them.",
        parameters=[MetricsQuerySerializer],
        responses={200: MetricsPageSerializer, 400: ERRORS, 403: NOT_LOGGED_IN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        run = self.get_object()
        query = MetricsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]

        points, has_more = metric_points(run, after, query.validated_data["keys"], query.validated_data["limit"])
        last_seq = points[-1]["seq"] if points else after
        return Response({"points": points, "last_seq": last_seq, "has_more": has_more})
