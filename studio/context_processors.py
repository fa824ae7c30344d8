from django.conf import settings


def studio(request):
    """Expose the MLflow UI address to every template."""
    return {"MLFLOW_UI_URL": settings.MLFLOW_UI_URL}
