from rest_framework.routers import DefaultRouter

from projects.api import DatasetViewSet, ProjectViewSet
from training.api import RunViewSet

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("runs", RunViewSet, basename="run")

urlpatterns = router.urls
