"""The projects and datasets API: list, read and create.

Creation goes through projects.services. This module checks who may see
what and turns the services' errors into API errors.
"""

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from projects import services
from projects.models import Dataset
from projects.permissions import visible_projects
from projects.serializers import (
    DatasetListQuerySerializer,
    DatasetSerializer,
    DatasetUploadSerializer,
    ProjectCreateSerializer,
    ProjectListQuerySerializer,
    ProjectSerializer,
)
from studio.api_errors import ErrorResponseSerializer

ERRORS = ErrorResponseSerializer
NOT_LOGGED_IN = OpenApiResponse(ERRORS, description="Not logged in.")
FORBIDDEN = OpenApiResponse(ERRORS, description="Not logged in, or the user is only a viewer of the team or project.")


def service_error(exc: DjangoValidationError) -> ValidationError:
    """Return the 400 error for a ValidationError from projects.services, keeping its fields and codes."""
    return ValidationError(as_serializer_error(exc))


class VisibleObjectMixin:
    """Read one object of get_queryset() by id: 404 whether it does not exist or is hidden from the user."""

    not_found_message = ""

    def get_object(self):
        pk = self.kwargs["pk"]
        try:
            obj = self.get_queryset().get(pk=int(pk))
        except (ValueError, ObjectDoesNotExist):
            raise NotFound(self.not_found_message % {"id": pk}) from None
        self.check_object_permissions(self.request, obj)
        return obj


@extend_schema_view(
    list=extend_schema(
        summary="List projects",
        description="Projects the user can see: those of their teams (staff see all).",
        parameters=[ProjectListQuerySerializer],
        responses={200: ProjectSerializer(many=True), 403: NOT_LOGGED_IN},
    ),
    retrieve=extend_schema(
        summary="Read a project",
        responses={200: ProjectSerializer, 403: NOT_LOGGED_IN,
                   404: OpenApiResponse(ERRORS, description="No such project, or the user may not see it.")},
    ),
    create=extend_schema(
        summary="Create a project",
        description="Needs the owner or maintainer role in the team.",
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer, 400: ERRORS, 403: FORBIDDEN},
    ),
)
class ProjectViewSet(VisibleObjectMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ProjectSerializer
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @property
    def not_found_message(self) -> str:
        return _("Project %(id)s was not found.")

    def get_queryset(self):
        projects = visible_projects(self.request.user).select_related("team").order_by("team__name", "name", "pk")
        if self.action == "list":
            query = ProjectListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            if query.validated_data.get("name"):
                projects = projects.filter(name=query.validated_data["name"])
        return projects

    def create(self, request):
        payload = ProjectCreateSerializer(data=request.data, context=self.get_serializer_context())
        payload.is_valid(raise_exception=True)
        data = payload.validated_data

        try:
            project = services.create_project(data["team"], data["name"], data["description"], request.user)
        except DjangoValidationError as exc:
            raise service_error(exc) from None
        except DjangoPermissionDenied as exc:
            # DRF would replace the services' message with its generic one.
            raise PermissionDenied(str(exc)) from None
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List datasets",
        description="Datasets of the projects the user can see, newest first.",
        parameters=[DatasetListQuerySerializer],
        responses={200: DatasetSerializer(many=True), 400: ERRORS, 403: NOT_LOGGED_IN},
    ),
    retrieve=extend_schema(
        summary="Read a dataset",
        responses={200: DatasetSerializer, 403: NOT_LOGGED_IN,
                   404: OpenApiResponse(ERRORS, description="No such dataset, or the user may not see its project.")},
    ),
    create=extend_schema(
        summary="Upload a dataset",
        description="Upload a CSV, NPZ or ZIP of image folders as multipart form data. The file is validated "
                    "before it is stored; an invalid file is rejected with a message naming the file and the "
                    "line, column or entry at fault, on the field `file` (or `target_column`, `task`, `format`). "
                    "Needs the owner or maintainer role in the project.",
        request={"multipart/form-data": DatasetUploadSerializer},
        responses={201: DatasetSerializer, 400: ERRORS, 403: FORBIDDEN},
    ),
)
class DatasetViewSet(VisibleObjectMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    @property
    def not_found_message(self) -> str:
        return _("Dataset %(id)s was not found.")

    def get_queryset(self):
        datasets = Dataset.objects.filter(project__in=visible_projects(self.request.user)).order_by("-created_at", "-pk")
        if self.action == "list":
            query = DatasetListQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            if "project" in query.validated_data:
                datasets = datasets.filter(project_id=query.validated_data["project"])
        return datasets

    def create(self, request):
        payload = DatasetUploadSerializer(data=request.data, context=self.get_serializer_context())
        payload.is_valid(raise_exception=True)
        data = payload.validated_data

        try:
            dataset = services.create_dataset(data["project"], data["file"], data["name"], fmt=data["format"] or None,
                                              task=data["task"], target_column=data["target_column"],
                                              user=request.user)
        except DjangoValidationError as exc:
            raise service_error(exc) from None
        except DjangoPermissionDenied as exc:
            # DRF would replace the services' message with its generic one.
            raise PermissionDenied(str(exc)) from None
        return Response(self.get_serializer(dataset).data, status=status.HTTP_201_CREATED)
