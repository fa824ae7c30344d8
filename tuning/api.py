"""The studies API: start, list, read and stop studies, list their trials, promote a trial to a run.

Studies change state only through tuning.services; this module checks who
may do what and turns the services' errors into API errors.
"""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from projects.permissions import can_edit, visible_projects
from studio.api_errors import Conflict, ErrorResponseSerializer
from training.engine.config import ConfigError
from training.serializers import RunSerializer
from tuning import services
from tuning.models import Study, Trial, TrialState
from tuning.serializers import (
    PromoteSerializer,
    StudyCreateSerializer,
    StudyListQuerySerializer,
    StudySerializer,
    TrialListQuerySerializer,
    TrialSerializer,
)

ERRORS = ErrorResponseSerializer
NOT_FOUND = OpenApiResponse(ERRORS, description="The study does not exist or the user may not see its project.")
NOT_LOGGED_IN = OpenApiResponse(ERRORS, description="Not logged in.")
FORBIDDEN = OpenApiResponse(ERRORS, description="Not logged in, or the user is only a viewer of the project.")
# Fields of the create request that a ConfigError may name as they are; others are run-config parameters.
_STUDY_FIELDS = ("dataset", "sampler", "pruner", "n_trials", "parallel", "timeout_seconds", "seed", "trial")


def study_error(exc: ConfigError) -> ValidationError:
    """Return the 400 error for a ConfigError, on the request field it concerns.

    Search-space errors come as `space.<parameter>`, objective errors as
    `objectives[i]`, and a bad base run config as `base_config.<parameter>`.
    """
    field = exc.field
    if not (field in _STUDY_FIELDS or field.startswith(("space", "objectives"))):
        field = f"base_config.{field}"
    return ValidationError({field: [exc.translate(_)]}, code="invalid")


@extend_schema_view(
    list=extend_schema(summary="List studies", description="Studies of the projects the user can see, newest first.",
                       parameters=[StudyListQuerySerializer],
                       responses={200: StudySerializer(many=True), 400: ERRORS, 403: NOT_LOGGED_IN}),
    retrieve=extend_schema(summary="Read a study",
                           responses={200: StudySerializer, 403: NOT_LOGGED_IN, 404: NOT_FOUND}),
)
class StudyViewSet(viewsets.GenericViewSet):
    serializer_class = StudySerializer
    parser_classes = [JSONParser]

    def get_queryset(self):
        return (Study.objects.filter(project__in=visible_projects(self.request.user))
                .select_related("project", "dataset", "best_trial").order_by("-created_at", "-pk"))

    def get_object(self) -> Study:
        pk = self.kwargs["pk"]
        try:
            study = self.get_queryset().get(pk=int(pk))
        except (ValueError, Study.DoesNotExist):
            raise NotFound(_("Study %(id)s was not found.") % {"id": pk}) from None
        self.check_object_permissions(self.request, study)
        return study

    def require_edit(self, study: Study, message: str) -> None:
        if not can_edit(self.request.user, study.project):
            raise PermissionDenied(message % {"project": study.project.name})

    def list(self, request):
        query = StudyListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        studies = self.get_queryset()
        if "project" in query.validated_data:
            studies = studies.filter(project_id=query.validated_data["project"])
        if "state" in query.validated_data:
            studies = studies.filter(state=query.validated_data["state"])
        page = self.paginate_queryset(studies)
        if page is not None:
            return self.get_paginated_response(self.get_serializer(page, many=True).data)
        return Response(self.get_serializer(studies, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Start a study",
        description="Validate the search, store the study and queue its first trials. Needs the owner or "
                    "maintainer role in the project.",
        request=StudyCreateSerializer,
        responses={
            201: StudySerializer,
            400: OpenApiResponse(ERRORS, description="A field is invalid: search-space errors are reported on "
                                                     "`space.<parameter>`, base config errors on "
                                                     "`base_config.<parameter>`."),
            403: FORBIDDEN,
        },
    )
    def create(self, request):
        payload = StudyCreateSerializer(data=request.data, context=self.get_serializer_context())
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        project, dataset, name = data.pop("project"), data.pop("dataset"), data.pop("name")
        data["objectives"] = [dict(o) for o in data["objectives"]]
        try:
            study = services.create_study(project, dataset, name=name, user=request.user, **data)
        except ConfigError as exc:
            raise study_error(exc) from None
        study.refresh_from_db()
        return Response(self.get_serializer(study).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Stop a study", operation_id="studies_stop",
        description="Start no more trials and cancel the running ones. Needs the owner or maintainer role.",
        request=None,
        responses={200: StudySerializer, 403: FORBIDDEN, 404: NOT_FOUND,
                   409: OpenApiResponse(ERRORS, description="The study has already ended.")},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        study = self.get_object()
        self.require_edit(study, _("Only owners and maintainers of project %(project)s may stop its studies."))
        if not services.stop_study(study):
            study.refresh_from_db()
            raise Conflict(_("Study %(id)s has already ended (%(state)s).")
                           % {"id": study.pk, "state": study.get_state_display()}, code="already_finished")
        study.refresh_from_db()
        return Response(self.get_serializer(study).data)

    @extend_schema(
        summary="List a study's trials", operation_id="studies_trials",
        parameters=[TrialListQuerySerializer],
        responses={200: TrialSerializer(many=True), 400: ERRORS, 403: NOT_LOGGED_IN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def trials(self, request, pk=None):
        study = self.get_object()
        query = TrialListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        trials = study.trials.select_related("run").order_by("number")
        if "state" in query.validated_data:
            trials = trials.filter(state=query.validated_data["state"])
        return Response(TrialSerializer(trials, many=True, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Read one trial", operation_id="studies_trial",
        responses={200: TrialSerializer, 403: NOT_LOGGED_IN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["get"], url_path=r"trials/(?P<number>\d+)")
    def trial(self, request, pk=None, number=None):
        study = self.get_object()
        trial = self._trial(study, int(number))
        return Response(TrialSerializer(trial, context=self.get_serializer_context()).data)

    def _trial(self, study: Study, number: int) -> Trial:
        trial = study.trials.select_related("run").filter(number=number).first()
        if trial is None:
            raise NotFound(_("Study %(id)s has no trial %(number)s.") % {"id": study.pk, "number": number})
        return trial

    @extend_schema(
        summary="Promote a trial to a training run", operation_id="studies_promote",
        description="Create a training run with the best trial's parameters, or those of the trial named. "
                    "Needs the owner or maintainer role.",
        request=PromoteSerializer,
        responses={201: RunSerializer, 400: ERRORS, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        study = self.get_object()
        self.require_edit(study, _("Only owners and maintainers of project %(project)s may start runs."))
        payload = PromoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        trial = None
        if data["trial"] is not None:
            trial = self._trial(study, data["trial"])
            if trial.state != TrialState.COMPLETE:
                raise ValidationError({"trial": [_("Trial %(number)s is %(state)s; only a complete trial can be "
                                                   "promoted.") % {"number": trial.number,
                                                                   "state": trial.get_state_display()}]})
        try:
            run = services.promote(study, trial=trial, epochs=data["epochs"], user=request.user, name=data["name"])
        except ConfigError as exc:
            raise study_error(exc) from None
        return Response(RunSerializer(run, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)
