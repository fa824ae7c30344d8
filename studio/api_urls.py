from django.urls import path
from rest_framework.routers import DefaultRouter

from projects.api import DatasetViewSet, ProjectViewSet
from studio.api_tokens import TokenView
from training.api import RunViewSet
from tuning.api import StudyViewSet

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("runs", RunViewSet, basename="run")
router.register("studies", StudyViewSet, basename="study")

urlpatterns = [path("auth/token/", TokenView.as_view(), name="api-token"), *router.urls]
