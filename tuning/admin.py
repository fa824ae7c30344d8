"""The operators' console for studies and their trials.

A study changes state only through tuning.services, so everything here is
read-only except the name; "Stop selected studies" calls stop_study.
Studies are created through the web pages, the API or `studio tune`.
"""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from training.admin import format_duration
from tuning import services
from tuning.models import Study, Trial


class TrialInline(admin.TabularInline):
    model = Trial
    fields = ["number", "state", "params", "values", "run", "reason", "started_at", "finished_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["number"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "state", "project", "dataset", "sampler", "pruner", "trials", "best",
                    "duration", "created_at"]
    list_display_links = ["id", "name"]
    list_filter = ["state", "sampler", "pruner", "project"]
    list_select_related = ["project", "dataset", "best_trial"]
    search_fields = ["name", "optuna_name"]
    date_hierarchy = "created_at"
    actions = ["stop_selected"]
    inlines = [TrialInline]
    fieldsets = [
        (None, {"fields": ["name", "project", "dataset", "created_by", "state", "error"]}),
        (_("Search"), {"fields": ["base_config", "space", "objectives", "sampler", "pruner", "seed", "n_trials",
                                  "parallel", "timeout_seconds"]}),
        (_("Progress"), {"fields": ["trials_started", "trials_finished", "best_trial", "best_values"]}),
        (_("Records"), {"fields": ["optuna_name", "mlflow_experiment_id", "mlflow_run_id", "created_at",
                                   "finished_at"]}),
    ]
    readonly_fields = [
        "project", "dataset", "created_by", "state", "error", "base_config", "space", "objectives", "sampler",
        "pruner", "seed", "n_trials", "parallel", "timeout_seconds", "trials_started", "trials_finished",
        "best_trial", "best_values", "optuna_name", "mlflow_experiment_id", "mlflow_run_id", "created_at",
        "finished_at",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("trials"))
    def trials(self, study: Study) -> str:
        return _("%(finished)s of %(total)s finished, %(running)s running") % {
            "finished": study.trials_finished, "total": study.n_trials,
            "running": study.trials_started - study.trials_finished}

    @admin.display(description=_("best value"))
    def best(self, study: Study) -> str:
        if study.best_value is None:
            return ""
        return f"{study.objectives[0]['metric']} = {study.best_value:.4g}"

    @admin.display(description=_("duration"))
    def duration(self, study: Study) -> str:
        return format_duration(study.duration_seconds)

    @admin.action(description=_("Stop selected studies"), permissions=["change"])
    def stop_selected(self, request, queryset):
        stopped = ended = 0
        for study in queryset:
            if services.stop_study(study):
                stopped += 1
            else:
                ended += 1
        if stopped:
            self.message_user(request, ngettext("%(count)d study stopped.", "%(count)d studies stopped.",
                                                stopped) % {"count": stopped}, messages.SUCCESS)
        if ended:
            self.message_user(request, ngettext(
                "%(count)d study had already ended and was left as it was.",
                "%(count)d studies had already ended and were left as they were.",
                ended) % {"count": ended}, messages.WARNING)


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "value", "run", "started_at", "finished_at"]
    list_filter = ["state"]
    list_select_related = ["study", "run"]
    search_fields = ["study__name"]
    readonly_fields = ["study", "number", "optuna_trial_id", "run", "state", "params", "values", "reason",
                       "started_at", "finished_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
