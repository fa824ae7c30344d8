from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _create_optuna_tables(sender, using="default", **kwargs):
    """Create Optuna's tables with the studio's, so parallel workers never race to create them."""
    if using != "default":
        return
    from tuning import services

    services.storage()


class TuningConfig(AppConfig):
    name = "tuning"
    verbose_name = _("Tuning")

    def ready(self):
        from training import hooks
        from tuning import services

        hooks.run_finished.connect(services.on_run_finished, dispatch_uid="tuning-run-finished")
        hooks.register_state_groups(services.study_groups_of_run)
        hooks.register_epoch_hook(services.pruning_hook_for)
        post_migrate.connect(_create_optuna_tables, sender=self, dispatch_uid="tuning-optuna-tables")
