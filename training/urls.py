from django.urls import path

from training import views

urlpatterns = [
    path("projects/<int:project_pk>/runs/new/", views.run_create, name="run-create"),
    path("projects/<int:project_pk>/runs/rows/", views.project_run_rows, name="project-run-rows"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/log/", views.run_log, name="run-log"),
    path("runs/<int:pk>/result/", views.run_result, name="run-result"),
    path("runs/<int:pk>/row/", views.run_row, name="run-row"),
]
