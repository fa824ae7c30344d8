# Placeholder viewset; replaced by the runs API.
from rest_framework import viewsets

from training.models import Run


class RunViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Run.objects.none()
