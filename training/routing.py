from django.urls import path

from training.consumers import ProjectRunsConsumer, RunConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/runs/", ProjectRunsConsumer.as_asgi()),
]
