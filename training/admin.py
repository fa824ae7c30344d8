"""The operators' console for runs and their metrics.

Everything a worker writes is read-only here, because run state changes only
through training.services. The "Cancel selected runs" action calls cancel_run.
Runs are created through the web pages or the API, never in the admin,
because only training.services.create_run validates and queues them.
"""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from training import services
from training.models import Metric, Run


def format_duration(seconds: float | None) -> str:
    """Return a duration as H:MM:SS, or an empty string when unknown."""
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "__str__", "status", "project", "dataset", "worker", "attempt", "device", "progress",
                    "duration", "main_metric", "diverged", "created_at"]
    list_display_links = ["id", "__str__"]
    list_filter = ["status", "project", "diverged"]
    list_select_related = ["project", "dataset"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    actions = ["cancel_selected"]
    fieldsets = [
        (None, {"fields": ["name", "project", "dataset", "created_by", "status", "error", "diverged"]}),
        (_("Configuration"), {"fields": ["config", "queue", "celery_task_id"]}),
        (_("Worker"), {"fields": ["worker", "device", "attempt", "heartbeat_at"]}),
        (_("Progress"), {"fields": ["epoch", "total_epochs", "step", "total_steps", "last_seq", "metrics_link"]}),
        (_("Times"), {"fields": ["created_at", "started_at", "finished_at", "duration"]}),
        (_("Results"), {"fields": ["summary", "confusion_matrix", "mlflow_experiment_id", "mlflow_run_id"]}),
        (_("Log"), {"fields": ["log"], "classes": ["collapse"]}),
    ]
    # The name is the only thing an operator edits. The rest is the request
    # that created the run or what its worker wrote.
    readonly_fields = [
        "project", "dataset", "created_by", "status", "error", "diverged", "config", "queue", "celery_task_id",
        "worker", "device", "attempt", "heartbeat_at", "epoch", "total_epochs", "step", "total_steps", "last_seq",
        "metrics_link", "created_at", "started_at", "finished_at", "duration", "summary", "confusion_matrix",
        "mlflow_experiment_id", "mlflow_run_id", "log",
    ]

    def has_add_permission(self, request):
        return False

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isdigit():
            # An integer in the search box also finds the run with that id.
            queryset |= self.model.objects.filter(pk=int(term))
        return queryset, may_have_duplicates

    @admin.display(description=_("progress"))
    def progress(self, run: Run) -> str:
        return _("epoch %(epoch)s/%(total_epochs)s, step %(step)s/%(total_steps)s") % {
            "epoch": run.epoch, "total_epochs": run.total_epochs, "step": run.step, "total_steps": run.total_steps}

    @admin.display(description=_("duration"))
    def duration(self, run: Run) -> str:
        return format_duration(run.duration_seconds)

    @admin.display(description=_("main metric"))
    def main_metric(self, run: Run) -> str:
        value = run.main_metric
        if value is None:
            return ""
        if isinstance(value, int | float):
            value = f"{value:.4g}"
        return f"{run.main_metric_key} = {value}"

    @admin.display(description=_("metrics"))
    def metrics_link(self, run: Run) -> str:
        if run.pk is None:
            return ""
        url = reverse("admin:training_metric_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">{}</a>', url, _("View the stored metric points"))

    @admin.action(description=_("Cancel selected runs"), permissions=["change"])
    def cancel_selected(self, request, queryset):
        cancelled = finished = 0
        for run in queryset:
            if services.cancel_run(run):
                cancelled += 1
            else:
                finished += 1

        if cancelled:
            self.message_user(request, ngettext("%(count)d run cancelled.", "%(count)d runs cancelled.",
                                                cancelled) % {"count": cancelled}, messages.SUCCESS)
        if finished:
            self.message_user(request, ngettext(
                "%(count)d run had already finished and was left as it was.",
                "%(count)d runs had already finished and were left as they were.",
                finished) % {"count": finished}, messages.WARNING)


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    """Metric points, read-only and paginated: a run can store hundreds of thousands."""

    list_display = ["run", "seq", "key", "step", "epoch", "display_value", "reported_at"]
    list_select_related = ["run"]
    list_filter = ["nonfinite"]
    search_fields = ["key"]
    list_per_page = 200
    # Counting every row of a large metric table on each page view is slow,
    # so the changelist shows only the filtered count.
    show_full_result_count = False
    ordering = ["run", "seq"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Points are the record of what a run reported. Deleting the run removes them.
        return False

    @admin.display(description=_("value"))
    def display_value(self, metric: Metric):
        return metric.display_value
