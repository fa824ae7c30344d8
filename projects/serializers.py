"""API shapes of projects and datasets, and of the queries and uploads that create them."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from projects.models import Dataset, DatasetFormat, Project, Task, Team
from projects.permissions import can_edit, visible_projects


@extend_schema_field(OpenApiTypes.URI)
class AbsoluteUrlField(serializers.Field):
    """The object's web page as an absolute URL, built from the request."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", _("The web page, as an absolute URL."))
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, value) -> str:
        request = self.context.get("request")
        path = value.get_absolute_url()
        return request.build_absolute_uri(path) if request is not None else path


class ProjectSerializer(serializers.ModelSerializer):
    team_name = serializers.CharField(source="team.name", read_only=True)
    url = AbsoluteUrlField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "team", "team_name", "url"]
        read_only_fields = ["id", "team"]


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=Project._meta.get_field("name").max_length)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(), help_text=_("The team that owns the project; you must be its owner or maintainer."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Teams the user is not a member of read as unknown ids, like projects they cannot see.
            teams = Team.objects.all()
            if not request.user.is_staff:
                teams = teams.filter(memberships__user=request.user)
            self.fields["team"].queryset = teams


class ProjectListQuerySerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True,
                                 help_text=_("Only the projects with exactly this name; all when empty."))


class DatasetSerializer(serializers.ModelSerializer):
    url = AbsoluteUrlField()

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "format", "task", "target_column", "sha256", "size_bytes", "num_rows",
                  "num_features", "input_shape", "num_classes", "class_names", "class_counts", "feature_names",
                  "builtin", "created_at", "url"]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    project = serializers.PrimaryKeyRelatedField(queryset=Project.objects.none(),
                                                 help_text=_("The project the dataset belongs to."))
    file = serializers.FileField(help_text=_("CSV with a header row, NPZ with arrays X and y, or a ZIP with one "
                                             "folder of images per class."))
    name = serializers.CharField(required=False, default="", allow_blank=True,
                                 max_length=Dataset._meta.get_field("name").max_length,
                                 help_text=_("Unique in the project; defaults to the file name without its extension."))
    format = serializers.ChoiceField(choices=DatasetFormat.choices, required=False, allow_blank=True, default="",
                                     help_text=_("Inferred from the extension (.csv, .npz, .zip) when omitted."))
    task = serializers.ChoiceField(choices=Task.choices, required=False, default=Task.CLASSIFICATION)
    target_column = serializers.CharField(required=False, default="", allow_blank=True,
                                          max_length=Dataset._meta.get_field("target_column").max_length,
                                          help_text=_("CSV only: the column to predict; the last column by default."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["project"].queryset = visible_projects(request.user)


class DatasetListQuerySerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, help_text=_("Only datasets of this project."))



class ProjectDatasetRequest(serializers.Serializer):
    """The project and dataset of a request that starts work (a run, a study) in a project.

    It checks who may start work there and that the dataset is the
    project's; subclasses set `forbidden_message` with a %(project)s.
    """

    forbidden_message = _("Only owners and maintainers of project %(project)s may start runs.")

    project = serializers.PrimaryKeyRelatedField(
        queryset=Project.objects.none(),  # replaced per request in __init__
        error_messages={"does_not_exist": _("Project {pk_value} was not found.")},
    )
    dataset = serializers.PrimaryKeyRelatedField(
        queryset=Dataset.objects.none(),  # replaced per request in __init__
        error_messages={"does_not_exist": _("Dataset {pk_value} was not found.")},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is None:
            # Schema generation builds the serializer without a request.
            return
        projects = visible_projects(request.user)
        self.fields["project"].queryset = projects
        self.fields["dataset"].queryset = Dataset.objects.filter(project__in=projects)

    def validate_project(self, project):
        # Raised here, before the other fields are validated, so that a viewer gets
        # 403 rather than a list of field errors for a request they may not make.
        if not can_edit(self.context["request"].user, project):
            raise PermissionDenied(self.forbidden_message % {"project": project.name})
        return project

    def validate(self, attrs):
        dataset, project = attrs["dataset"], attrs["project"]
        if dataset.project_id != project.pk:
            raise serializers.ValidationError(
                {"dataset": _("Dataset %(dataset)s belongs to another project, not to %(project)s.")
                 % {"dataset": dataset.name, "project": project.name}},
                code="wrong_project",
            )
        return attrs
