# Placeholder viewsets; replaced by the projects API.
from rest_framework import viewsets

from projects.models import Dataset, Project


class ProjectViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Project.objects.none()


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Dataset.objects.none()
