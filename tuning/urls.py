from django.urls import path

from tuning import views

urlpatterns = [
    path("projects/<int:project_pk>/studies/new/", views.study_create, name="study-create"),
    path("projects/<int:project_pk>/studies/rows/", views.project_study_rows, name="project-study-rows"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/<int:pk>/charts/", views.study_charts, name="study-charts"),
    path("studies/<int:pk>/stop/", views.study_stop, name="study-stop"),
    path("studies/<int:pk>/promote/", views.study_promote, name="study-promote"),
    path("studies/<int:pk>/row/", views.study_row, name="study-row"),
]
