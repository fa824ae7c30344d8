"""Live events of studies: the payloads pushed to a study's page and its project's study list."""


def study_group(study_id: int) -> str:
    return f"study-{study_id}"


def project_studies_group(project_id: int) -> str:
    return f"project-{project_id}-studies"


def study_state(study) -> dict:
    return {
        "id": study.pk,
        "name": study.name,
        "state": study.state,
        "state_display": str(study.get_state_display()),
        "n_trials": study.n_trials,
        "trials_started": study.trials_started,
        "trials_finished": study.trials_finished,
        "progress": study.progress,
        "eta_seconds": study.eta_seconds,
        "duration_seconds": study.duration_seconds,
        "created_at": study.created_at.isoformat(),
        "finished_at": study.finished_at.isoformat() if study.finished_at else None,
        "best_values": study.best_values,
        "best_trial": study.best_trial.number if study.best_trial_id and study.best_trial else None,
        "error": study.error,
    }


def trial_state(trial) -> dict:
    run = trial.run
    return {
        "id": trial.pk,
        "study": trial.study_id,
        "number": trial.number,
        "state": trial.state,
        "state_display": str(trial.get_state_display()),
        "params": trial.params,
        "values": trial.values,
        "reason": trial.reason,
        "duration_seconds": trial.duration_seconds,
        "run": run.pk if run else None,
        "run_status": run.status if run else None,
        "epoch": run.epoch if run else 0,
        "total_epochs": run.total_epochs if run else 0,
    }


def study_message(study) -> dict:
    return {"type": "study.state", "study": study_state(study)}


def trial_message(trial) -> dict:
    return {"type": "trial.state", "trial": trial_state(trial)}
