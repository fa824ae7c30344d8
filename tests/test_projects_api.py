"""The projects and datasets API: uploads, filters, error shapes and who may do what."""

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects import services
from projects.models import Dataset, Project, Team

IRIS = (
    b"sepal_length,sepal_width,petal_width,species\n"
    b"5.1,3.5,0.2,setosa\n"
    b"4.9,3.0,0.2,setosa\n"
    b"7.0,3.2,1.4,versicolor\n"
    b"6.3,3.3,2.5,virginica\n"
)


@pytest.fixture
def home(settings, tmp_path):
    settings.STUDIO_HOME = tmp_path / "home"
    settings.STUDIO_HOME.mkdir()
    return settings.STUDIO_HOME


@pytest.fixture
def api():
    return APIClient()


def post_dataset(api, project_id, content=IRIS, filename="iris.csv", **fields):
    data = {"project": project_id, "file": SimpleUploadedFile(filename, content), **fields}
    return api.post("/api/v1/datasets/", data, format="multipart")


def make_dataset(project, user, name="iris", content=IRIS):
    return services.create_dataset(project, ContentFile(content, name=f"{name}.csv"), name, user=user)


# Projects


def test_project_list_only_visible(api, project, owner, outsider):
    hidden = Project.objects.create(team=Team.objects.get(name="speech"), name="asr")
    api.force_authenticate(owner)

    response = api.get("/api/v1/projects/")

    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert response.json()["results"] == [{
        "id": project.pk, "name": "digits", "description": "", "team": project.team.pk, "team_name": "vision",
        "url": f"http://testserver/projects/{project.pk}/",
    }]
    assert hidden.pk not in [item["id"] for item in response.json()["results"]]


def test_project_list_name_filter(api, project, owner, team):
    Project.objects.create(team=team, name="wine")
    api.force_authenticate(owner)

    response = api.get("/api/v1/projects/", {"name": "wine"})

    assert response.status_code == 200
    assert [item["name"] for item in response.json()["results"]] == ["wine"]
    everything = api.get("/api/v1/projects/", {"name": ""})
    assert [item["name"] for item in everything.json()["results"]] == ["digits", "wine"]


def test_project_retrieve(api, project, viewer):
    api.force_authenticate(viewer)

    response = api.get(f"/api/v1/projects/{project.pk}/")

    assert response.status_code == 200
    assert response.json()["name"] == "digits"
    assert response.json()["team_name"] == "vision"


def test_project_retrieve_outsider_not_found(api, project, outsider):
    api.force_authenticate(outsider)

    response = api.get(f"/api/v1/projects/{project.pk}/")

    assert response.status_code == 404
    assert response.json() == {"errors": [
        {"field": None, "code": "not_found", "message": f"Project {project.pk} was not found."}
    ]}


def test_project_create_by_maintainer(api, team, maintainer):
    api.force_authenticate(maintainer)

    response = api.post("/api/v1/projects/", {"name": "speech", "team": team.pk, "description": "ASR"},
                        format="json")

    assert response.status_code == 201
    project = Project.objects.get(team=team, name="speech")
    assert response.json() == {
        "id": project.pk, "name": "speech", "description": "ASR", "team": team.pk, "team_name": "vision",
        "url": f"http://testserver/projects/{project.pk}/",
    }


def test_project_create_by_viewer_forbidden(api, team, viewer):
    api.force_authenticate(viewer)

    response = api.post("/api/v1/projects/", {"name": "speech", "team": team.pk}, format="json")

    assert response.status_code == 403
    assert response.json() == {"errors": [{
        "field": None, "code": "permission_denied",
        "message": "Only owners and maintainers of team vision can create projects in it.",
    }]}
    assert not Project.objects.filter(name="speech").exists()


def test_project_create_in_foreign_team(api, team, outsider):
    api.force_authenticate(outsider)

    response = api.post("/api/v1/projects/", {"name": "speech", "team": team.pk}, format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": [{
        "field": "team", "code": "does_not_exist", "message": f'Invalid pk "{team.pk}" - object does not exist.',
    }]}


def test_project_create_duplicate_name(api, project, owner):
    api.force_authenticate(owner)

    response = api.post("/api/v1/projects/", {"name": "digits", "team": project.team.pk}, format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": [
        {"field": "name", "code": "unique", "message": "Team vision already has a project named digits."}
    ]}


# Datasets


def test_dataset_upload(api, home, project, owner):
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, name="iris", task="classification")

    assert response.status_code == 201
    dataset = Dataset.objects.get(project=project, name="iris")
    sha = hashlib.sha256(IRIS).hexdigest()
    assert response.json() == {
        "id": dataset.pk, "project": project.pk, "name": "iris", "format": "csv", "task": "classification",
        "target_column": "species", "sha256": sha, "size_bytes": len(IRIS), "num_rows": 4, "num_features": 3,
        "input_shape": [3], "num_classes": 3, "class_names": ["setosa", "versicolor", "virginica"],
        "class_counts": {"setosa": 2, "versicolor": 1, "virginica": 1},
        "feature_names": ["sepal_length", "sepal_width", "petal_width"], "builtin": False,
        "created_at": response.json()["created_at"], "url": f"http://testserver/datasets/{dataset.pk}/",
    }
    assert dataset.created_by == owner
    assert dataset.absolute_path.read_bytes() == IRIS


def test_dataset_upload_regression_with_target(api, home, project, owner):
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, name="petal", task="regression", target_column="petal_width",
                            content=IRIS.replace(b"species", b"kind"))

    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "field": "file", "code": "not_a_number",
        "message": "iris.csv, line 2, column 'kind': 'setosa' is not a number",
    }]

    table = b"a,b,price\n1,2,3.5\n2,3,4.5\n"
    response = post_dataset(api, project.pk, content=table, filename="homes.csv", task="regression",
                            target_column="price")
    assert response.status_code == 201
    assert response.json()["name"] == "homes"
    assert response.json()["num_classes"] is None
    assert response.json()["class_counts"] == {}


def test_dataset_upload_bad_file_errors(api, home, project, owner):
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, content=IRIS + b"6.1,2.8,abc,virginica\n")

    assert response.status_code == 400
    assert response.json() == {"errors": [{
        "field": "file", "code": "not_a_number",
        "message": "iris.csv, line 6, column 'petal_width': 'abc' is not a number",
    }]}
    assert not Dataset.objects.exists()
    assert not (home / "datasets").exists() or not any((home / "datasets").rglob("*.csv"))
    assert list((home / "tmp").iterdir()) == []


def test_dataset_upload_unknown_target(api, home, project, owner):
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, target_column="colour")

    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "field": "target_column", "code": "unknown_column",
        "message": "iris.csv: target column 'colour' not found; the columns are: sepal_length, sepal_width, "
                   "petal_width, species",
    }]


def test_dataset_upload_unknown_extension(api, home, project, owner):
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, filename="iris.txt")

    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "field": "format", "code": "unknown_format",
        "message": "Cannot tell the format of iris.txt from its extension: name it .csv, .npz or .zip, or choose "
                   "a format.",
    }]


def test_dataset_upload_missing_fields(api, home, project, owner):
    api.force_authenticate(owner)

    response = api.post("/api/v1/datasets/", {"task": "clustering"}, format="multipart")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "project", "code": "required", "message": "This field is required."},
        {"field": "file", "code": "required", "message": "No file was submitted."},
        {"field": "task", "code": "invalid_choice", "message": '"clustering" is not a valid choice.'},
    ]


def test_dataset_upload_duplicate_name(api, home, project, owner):
    make_dataset(project, owner, name="iris")
    api.force_authenticate(owner)

    response = post_dataset(api, project.pk, name="iris")

    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "field": "name", "code": "unique",
        "message": "Project digits already has a dataset named iris; choose another name.",
    }]
    assert Dataset.objects.count() == 1


def test_dataset_upload_viewer_forbidden(api, home, project, viewer):
    api.force_authenticate(viewer)

    response = post_dataset(api, project.pk)

    assert response.status_code == 403
    assert response.json() == {"errors": [{
        "field": None, "code": "permission_denied",
        "message": "Only owners and maintainers can upload datasets to digits.",
    }]}
    assert not Dataset.objects.exists()


def test_dataset_upload_outsider_unknown_project(api, home, project, outsider):
    api.force_authenticate(outsider)

    response = post_dataset(api, project.pk)

    assert response.status_code == 400
    assert response.json()["errors"] == [{
        "field": "project", "code": "does_not_exist",
        "message": f'Invalid pk "{project.pk}" - object does not exist.',
    }]


def test_dataset_upload_with_token(api, home, project, owner):
    token = Token.objects.create(user=owner)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = post_dataset(api, project.pk, name="iris")

    assert response.status_code == 201
    assert Dataset.objects.get(pk=response.json()["id"]).created_by == owner


def test_dataset_upload_anonymous(api, home, project):
    response = post_dataset(api, project.pk)

    assert response.status_code == 403
    assert response.json() == {"errors": [
        {"field": None, "code": "not_authenticated", "message": "Authentication credentials were not provided."}
    ]}
    assert not Dataset.objects.exists()


def test_dataset_list_project_filter(api, home, project, owner, team):
    other = Project.objects.create(team=team, name="wine")
    first = make_dataset(project, owner, name="iris")
    second = make_dataset(other, owner, name="iris-copy")
    api.force_authenticate(owner)

    everything = api.get("/api/v1/datasets/")
    filtered = api.get("/api/v1/datasets/", {"project": other.pk})

    assert everything.status_code == 200
    assert [item["id"] for item in everything.json()["results"]] == [second.pk, first.pk]
    assert filtered.status_code == 200
    assert [item["id"] for item in filtered.json()["results"]] == [second.pk]


def test_dataset_list_invalid_filter(api, owner):
    api.force_authenticate(owner)

    response = api.get("/api/v1/datasets/", {"project": "abc"})

    assert response.status_code == 400
    assert response.json() == {"errors": [
        {"field": "project", "code": "invalid", "message": "A valid integer is required."}
    ]}


def test_dataset_list_hides_other_teams(api, home, project, owner, outsider):
    make_dataset(project, owner)
    api.force_authenticate(outsider)

    response = api.get("/api/v1/datasets/", {"project": project.pk})

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_dataset_retrieve(api, home, project, owner, viewer, outsider):
    dataset = make_dataset(project, owner)

    api.force_authenticate(viewer)
    seen = api.get(f"/api/v1/datasets/{dataset.pk}/")
    api.force_authenticate(outsider)
    hidden = api.get(f"/api/v1/datasets/{dataset.pk}/")

    assert seen.status_code == 200
    assert seen.json()["sha256"] == dataset.sha256
    assert hidden.status_code == 404
    assert hidden.json()["errors"] == [
        {"field": None, "code": "not_found", "message": f"Dataset {dataset.pk} was not found."}
    ]


def test_schema_documents_projects_and_datasets(api, owner):
    api.force_authenticate(owner)

    response = api.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/api/v1/projects/"]) == {"get", "post"}
    assert set(paths["/api/v1/datasets/"]) == {"get", "post"}
    assert "multipart/form-data" in paths["/api/v1/datasets/"]["post"]["requestBody"]["content"]
    assert [p["name"] for p in paths["/api/v1/datasets/"]["get"]["parameters"]] == ["limit", "offset", "project"]
    assert "name" in [p["name"] for p in paths["/api/v1/projects/"]["get"]["parameters"]]
    assert "400" in paths["/api/v1/datasets/"]["post"]["responses"]
    assert "/api/v1/datasets/{id}/" in paths
