from django.urls import path
from django.views.generic import TemplateView

# Placeholder home page; replaced by the projects views.
urlpatterns = [path("", TemplateView.as_view(template_name="base.html"), name="home")]
