"""Who may see and change projects and datasets, page by page and endpoint by endpoint.

Owners and maintainers may change a project, viewers only look (403 on
changes), outsiders get 404 as if the project did not exist, anonymous
visitors are sent to the login page (pages) or get 403 (API). Staff see
and change everything.
"""

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from projects import services
from projects.models import Dataset, Project
from projects.permissions import can_edit, can_view, visible_projects

TABLE = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
PEOPLE = ["owner", "maintainer", "viewer", "outsider"]


@pytest.fixture
def home(settings, tmp_path):
    settings.STUDIO_HOME = tmp_path / "home"
    settings.STUDIO_HOME.mkdir()
    return settings.STUDIO_HOME


@pytest.fixture
def people(owner, maintainer, viewer, outsider):
    return {"owner": owner, "maintainer": maintainer, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", "sam@example.com", "secret-pass-123", is_staff=True)


@pytest.fixture
def dataset(home, project, owner):
    return services.create_dataset(project, ContentFile(TABLE, name="table.csv"), "table", user=owner)


def upload_data(project, name):
    return {"file": SimpleUploadedFile("table.csv", TABLE), "name": name, "format": "", "task": "classification",
            "target_column": "", "project": project.pk}


@pytest.mark.parametrize(("person", "view", "edit"), [
    ("owner", True, True), ("maintainer", True, True), ("viewer", True, False), ("outsider", False, False),
])
def test_permission_helpers(people, project, person, view, edit):
    user = people[person]

    assert can_view(user, project) is view
    assert can_edit(user, project) is edit
    assert (project in visible_projects(user)) is view


@pytest.mark.parametrize(("person", "expected"), [
    ("owner", 200), ("maintainer", 200), ("viewer", 200), ("outsider", 404),
])
def test_read_pages(client, people, project, dataset, person, expected):
    client.force_login(people[person])

    assert client.get(reverse("project-detail", args=[project.pk])).status_code == expected
    assert client.get(reverse("dataset-detail", args=[dataset.pk])).status_code == expected


@pytest.mark.parametrize(("person", "expected"), [
    ("owner", 302), ("maintainer", 302), ("viewer", 403), ("outsider", 404),
])
def test_upload_page(client, people, home, project, person, expected):
    client.force_login(people[person])

    page = client.get(reverse("dataset-upload", args=[project.pk]))
    response = client.post(reverse("dataset-upload", args=[project.pk]), upload_data(project, f"by-{person}"))

    assert page.status_code == (200 if expected == 302 else expected)
    assert response.status_code == expected
    assert Dataset.objects.filter(name=f"by-{person}").exists() is (expected == 302)


@pytest.mark.parametrize("name", ["home", "project-detail", "dataset-detail", "dataset-upload"])
def test_pages_need_login(client, project, dataset, name):
    args = {"home": [], "project-detail": [project.pk], "dataset-detail": [dataset.pk],
            "dataset-upload": [project.pk]}[name]

    response = client.get(reverse(name, args=args))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


@pytest.mark.parametrize(("person", "expected"), [
    ("owner", 200), ("maintainer", 200), ("viewer", 200), ("outsider", 404),
])
def test_api_read(people, project, dataset, person, expected):
    api = APIClient()
    api.force_authenticate(people[person])

    assert api.get(f"/api/v1/projects/{project.pk}/").status_code == expected
    assert api.get(f"/api/v1/datasets/{dataset.pk}/").status_code == expected
    listed = [item["id"] for item in api.get("/api/v1/datasets/").json()["results"]]
    assert (dataset.pk in listed) is (expected == 200)


@pytest.mark.parametrize(("person", "expected"), [
    ("owner", 201), ("maintainer", 201), ("viewer", 403), ("outsider", 400),
])
def test_api_upload(people, home, project, person, expected):
    api = APIClient()
    api.force_authenticate(people[person])

    response = api.post("/api/v1/datasets/", upload_data(project, f"by-{person}"), format="multipart")

    assert response.status_code == expected
    assert Dataset.objects.filter(name=f"by-{person}").exists() is (expected == 201)


@pytest.mark.parametrize(("person", "expected"), [
    ("owner", 201), ("maintainer", 201), ("viewer", 403), ("outsider", 400),
])
def test_api_create_project(people, team, person, expected):
    api = APIClient()
    api.force_authenticate(people[person])

    response = api.post("/api/v1/projects/", {"name": f"by-{person}", "team": team.pk}, format="json")

    assert response.status_code == expected
    assert Project.objects.filter(name=f"by-{person}").exists() is (expected == 201)


def test_staff_see_and_change_everything(client, staff, project, dataset, home):
    client.force_login(staff)
    api = APIClient()
    api.force_authenticate(staff)

    assert client.get(reverse("project-detail", args=[project.pk])).status_code == 200
    assert client.get(reverse("dataset-detail", args=[dataset.pk])).status_code == 200
    response = client.post(reverse("dataset-upload", args=[project.pk]), upload_data(project, "by-staff"))
    assert response.status_code == 302
    created = api.post("/api/v1/projects/", {"name": "by-staff", "team": project.team.pk}, format="json")
    assert created.status_code == 201
