from django.urls import path

from tuning.consumers import ProjectStudiesConsumer, StudyConsumer

websocket_urlpatterns = [
    path("ws/studies/<int:study_id>/", StudyConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/studies/", ProjectStudiesConsumer.as_asgi()),
]
