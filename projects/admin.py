"""The operators' console for teams, their members, projects and datasets.

A dataset's file and summary are written once, when the upload is validated,
so they are read-only here. Datasets are added through the upload page or
the API, which validate the file.
"""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from projects.models import Dataset, Membership, Project, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    list_select_related = ["team"]
    search_fields = ["name", "team__name"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "format", "task", "num_rows", "num_features", "num_classes", "size",
                    "builtin", "created_at"]
    list_filter = ["format", "task", "builtin", "project"]
    list_select_related = ["project"]
    search_fields = ["name", "sha256"]
    fieldsets = [
        (None, {"fields": ["name", "project", "format", "task", "target_column", "builtin", "created_by",
                           "created_at"]}),
        (_("Stored file"), {"fields": ["file_path", "sha256", "size"]}),
        (_("Summary"), {"fields": ["num_rows", "num_features", "input_shape", "num_classes", "class_names",
                                   "class_counts", "feature_names", "preview"]}),
    ]
    readonly_fields = ["project", "format", "task", "target_column", "builtin", "created_by", "created_at",
                       "file_path", "sha256", "size", "num_rows", "num_features", "input_shape", "num_classes",
                       "class_names", "class_counts", "feature_names", "preview"]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("size"), ordering="size_bytes")
    def size(self, dataset: Dataset) -> str:
        return filesizeformat(dataset.size_bytes)
