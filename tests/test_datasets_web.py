"""Project and dataset pages, and the services behind them, as the named people use them."""

import hashlib
import html
import io
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from projects import services
from projects.models import Dataset, Membership, Project, Role, Team
from training.models import Run

IRIS = (
    b"sepal_length,sepal_width,petal_width,species\n"
    b"5.1,3.5,0.2,setosa\n"
    b"4.9,3.0,0.2,setosa\n"
    b"7.0,3.2,1.4,versicolor\n"
    b"6.3,3.3,2.5,virginica\n"
)
BAD_IRIS = IRIS + b"6.1,2.8,abc,virginica\n"
BAD_IRIS_MESSAGE = "iris.csv, line 6, column 'petal_width': 'abc' is not a number"


@pytest.fixture
def home(settings, tmp_path):
    """A fresh STUDIO_HOME per test, so stored and temporary files can be counted."""
    settings.STUDIO_HOME = tmp_path / "home"
    settings.STUDIO_HOME.mkdir()
    return settings.STUDIO_HOME


def stored_files(home) -> list:
    return sorted(path for path in (home / "datasets").rglob("*") if path.is_file()) \
        if (home / "datasets").exists() else []


def temp_files(home) -> list:
    return sorted((home / "tmp").iterdir()) if (home / "tmp").exists() else []


def upload(client, project, content=IRIS, filename="iris.csv", **fields):
    data = {"file": SimpleUploadedFile(filename, content), "name": "", "format": "", "task": "classification",
            "target_column": ""}
    data.update(fields)
    return client.post(reverse("dataset-upload", args=[project.pk]), data)


def image_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry, color in [("cats/1.png", 10), ("cats/2.png", 20), ("dogs/1.png", 200)]:
            image = io.BytesIO()
            Image.new("L", (6, 4), color).save(image, format="PNG")
            archive.writestr(entry, image.getvalue())
    return buffer.getvalue()


# Home page


def test_home_requires_login(client, project):
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_home_lists_projects_with_counts(client, home, project, owner, outsider):
    dataset = services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=owner)
    Run.objects.create(project=project, dataset=dataset, config={"model": "mlp"})
    Run.objects.create(project=project, dataset=dataset, config={"model": "mlp"})
    other = Project.objects.create(team=Team.objects.get(name="speech"), name="speech-secret")
    client.force_login(owner)

    response = client.get(reverse("home"))

    assert response.status_code == 200
    listed = list(response.context["projects"])
    assert listed == [project]
    assert listed[0].num_datasets == 1
    assert listed[0].num_runs == 2
    assert other.name not in response.content.decode()
    assert response.context["can_create"] is True


def test_home_creates_project(client, owner, team):
    client.force_login(owner)

    response = client.post(reverse("home"), {"team": team.pk, "name": " speech ", "description": "ASR models"})

    project = Project.objects.get(team=team, name="speech")
    assert response.status_code == 302
    assert response.url == reverse("project-detail", args=[project.pk])
    assert project.description == "ASR models"


def test_home_duplicate_project_name(client, maintainer, project):
    client.force_login(maintainer)

    response = client.post(reverse("home"), {"team": project.team.pk, "name": "digits", "description": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["Team vision already has a project named digits."]
    assert Project.objects.filter(name="digits").count() == 1


def test_home_viewer_cannot_create_project(client, viewer, team):
    client.force_login(viewer)

    page = client.get(reverse("home"))
    response = client.post(reverse("home"), {"team": team.pk, "name": "sneaky", "description": ""})

    assert page.context["can_create"] is False
    assert "Only owners and maintainers of a team can create projects in it." in page.content.decode()
    assert response.status_code == 200
    assert response.context["form"].errors["team"] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    assert not Project.objects.filter(name="sneaky").exists()


# Project page


def test_project_detail_lists_datasets_and_runs(client, home, project, owner):
    dataset = services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=owner)
    run = Run.objects.create(project=project, dataset=dataset, name="first", config={"model": "mlp"})
    client.force_login(owner)

    response = client.get(reverse("project-detail", args=[project.pk]))

    assert response.status_code == 200
    assert list(response.context["datasets"]) == [dataset]
    assert list(response.context["runs"]) == [run]
    assert response.context["can_edit"] is True
    content = response.content.decode()
    assert reverse("dataset-detail", args=[dataset.pk]) in content
    assert reverse("dataset-upload", args=[project.pk]) in content


def test_project_detail_viewer_sees_no_upload_link(client, home, project, viewer):
    client.force_login(viewer)

    response = client.get(reverse("project-detail", args=[project.pk]))

    assert response.status_code == 200
    assert response.context["can_edit"] is False
    assert reverse("dataset-upload", args=[project.pk]) not in response.content.decode()


def test_project_detail_outsider_404(client, project, outsider):
    client.force_login(outsider)

    assert client.get(reverse("project-detail", args=[project.pk])).status_code == 404


# Upload


def test_upload_csv_stores_row_and_file(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, name="iris")

    dataset = Dataset.objects.get(project=project, name="iris")
    assert response.status_code == 302
    assert response.url == reverse("dataset-detail", args=[dataset.pk])
    sha = hashlib.sha256(IRIS).hexdigest()
    assert dataset.sha256 == sha
    assert dataset.file_path == f"datasets/{sha[:2]}/{sha}.csv"
    assert dataset.absolute_path == home / "datasets" / sha[:2] / f"{sha}.csv"
    assert dataset.absolute_path.read_bytes() == IRIS
    assert dataset.format == "csv"
    assert dataset.task == "classification"
    assert dataset.target_column == "species"
    assert dataset.size_bytes == len(IRIS)
    assert dataset.num_rows == 4
    assert dataset.num_features == 3
    assert dataset.input_shape == [3]
    assert dataset.num_classes == 3
    assert dataset.class_counts == {"setosa": 2, "versicolor": 1, "virginica": 1}
    assert dataset.feature_names == ["sepal_length", "sepal_width", "petal_width"]
    assert dataset.preview[0] == [5.1, 3.5, 0.2, "setosa"]
    assert dataset.created_by == owner
    assert dataset.builtin is False
    assert temp_files(home) == []


def test_upload_name_defaults_to_file_stem(client, home, project, maintainer):
    client.force_login(maintainer)

    upload(client, project, filename="flowers.csv")

    assert Dataset.objects.get(project=project).name == "flowers"


def test_upload_bad_csv_shows_message(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, content=BAD_IRIS, name="iris")

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [BAD_IRIS_MESSAGE]
    assert html.escape(BAD_IRIS_MESSAGE) in response.content.decode()
    assert not Dataset.objects.exists()
    assert stored_files(home) == []
    assert temp_files(home) == []


def test_upload_unknown_target_column(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, target_column="colour")

    assert response.context["form"].errors["target_column"] == [
        "iris.csv: target column 'colour' not found; the columns are: sepal_length, sepal_width, petal_width, species"
    ]
    assert not Dataset.objects.exists()


def test_upload_unknown_extension(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, filename="iris.txt")

    assert response.context["form"].errors["format"] == [
        "Cannot tell the format of iris.txt from its extension: name it .csv, .npz or .zip, or choose a format."
    ]
    assert temp_files(home) == []


def test_upload_explicit_format_overrides_extension(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, filename="iris.txt", format="csv")

    assert response.status_code == 302
    assert Dataset.objects.get(project=project).file_path.endswith(".csv")


def test_upload_same_bytes_stored_once(client, home, project, owner):
    client.force_login(owner)

    upload(client, project, name="first")
    upload(client, project, name="second")

    first = Dataset.objects.get(name="first")
    second = Dataset.objects.get(name="second")
    assert first.file_path == second.file_path
    assert stored_files(home) == [first.absolute_path]
    assert temp_files(home) == []


def test_upload_duplicate_name_rejected(client, home, project, owner):
    client.force_login(owner)
    upload(client, project, name="iris")

    response = upload(client, project, content=IRIS + b"5.0,3.0,0.1,setosa\n", name="iris")

    assert response.context["form"].errors["name"] == [
        "Project digits already has a dataset named iris; choose another name."
    ]
    assert Dataset.objects.count() == 1
    assert len(stored_files(home)) == 1
    assert temp_files(home) == []


def test_upload_name_race_leaves_nothing(client, home, project, owner, monkeypatch):
    """A row with the same name created between the check and the insert: the unique constraint catches it."""
    client.force_login(owner)
    upload(client, project, name="iris")
    monkeypatch.setattr(services, "_check_name", lambda project, name: None)

    response = upload(client, project, content=IRIS + b"5.0,3.0,0.1,setosa\n", name="iris")

    assert response.context["form"].errors["name"] == [
        "Project digits already has a dataset named iris; choose another name."
    ]
    assert Dataset.objects.count() == 1
    assert stored_files(home) == [Dataset.objects.get().absolute_path]
    assert temp_files(home) == []


def test_upload_too_large(client, home, project, owner, settings):
    settings.DATASET_MAX_UPLOAD_MB = 1
    client.force_login(owner)
    big = IRIS + b"5.0,3.0,0.1,setosa\n" * 60_000

    response = upload(client, project, content=big, name="big")

    assert len(big) > 1024 * 1024
    assert response.context["form"].errors["file"] == ["iris.csv is larger than the maximum upload of 1 MB."]
    assert not Dataset.objects.exists()
    assert temp_files(home) == []


def test_upload_image_zip(client, home, project, owner):
    client.force_login(owner)

    response = upload(client, project, content=image_zip(), filename="pets.zip")

    dataset = Dataset.objects.get(project=project)
    assert response.status_code == 302
    assert dataset.name == "pets"
    assert dataset.format == "images"
    assert dataset.file_path.endswith(".zip")
    assert dataset.input_shape == [1, 4, 6]
    assert dataset.class_counts == {"cats": 2, "dogs": 1}
    assert dataset.preview == [{"class": "cats", "entries": ["cats/1.png", "cats/2.png"]},
                               {"class": "dogs", "entries": ["dogs/1.png"]}]


def test_upload_zip_with_parent_entry(client, home, project, owner):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", b"x")
        archive.writestr("../outside.png", b"x")
    client.force_login(owner)

    response = upload(client, project, content=buffer.getvalue(), filename="pets.zip")

    assert response.context["form"].errors["file"] == [
        "pets.zip, entry '../outside.png': the path is absolute or contains '..'; such archives are rejected"
    ]
    assert not (home / "outside.png").exists()
    assert stored_files(home) == []


def test_upload_without_file(client, home, project, owner):
    client.force_login(owner)

    response = client.post(reverse("dataset-upload", args=[project.pk]), {"task": "classification"})

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == ["This field is required."]
    assert not Dataset.objects.exists()


def test_upload_viewer_forbidden(client, home, project, viewer):
    client.force_login(viewer)

    page = client.get(reverse("dataset-upload", args=[project.pk]))
    response = upload(client, project)

    assert page.status_code == 403
    assert response.status_code == 403
    assert not Dataset.objects.exists()
    assert temp_files(home) == []


def test_upload_outsider_not_found(client, home, project, outsider):
    client.force_login(outsider)

    assert client.get(reverse("dataset-upload", args=[project.pk])).status_code == 404
    assert upload(client, project).status_code == 404
    assert not Dataset.objects.exists()


# Dataset page


def test_dataset_detail_shows_summary(client, home, project, owner):
    dataset = services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=owner)
    client.force_login(owner)

    response = client.get(reverse("dataset-detail", args=[dataset.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert dataset.sha256 in content
    assert response.context["class_balance"] == [
        {"name": "setosa", "count": 2, "percent": 50.0, "width": 100.0},
        {"name": "versicolor", "count": 1, "percent": 25.0, "width": 50.0},
        {"name": "virginica", "count": 1, "percent": 25.0, "width": 50.0},
    ]
    assert response.context["preview_columns"] == ["sepal_length", "sepal_width", "petal_width", "species"]
    assert 'style="width: 50.0%"' in content
    assert f"{reverse('run-create', args=[project.pk])}?dataset={dataset.pk}" in content


def test_dataset_detail_images_preview(client, home, project, owner):
    dataset = services.create_dataset(project, ContentFile(image_zip(), name="pets.zip"), "pets", user=owner)
    client.force_login(owner)

    response = client.get(reverse("dataset-detail", args=[dataset.pk]))

    assert response.status_code == 200
    assert response.context["preview_columns"] == []
    assert "cats/1.png, cats/2.png" in response.content.decode()


def test_dataset_detail_viewer_has_no_train_link(client, home, project, owner, viewer):
    dataset = services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=owner)
    client.force_login(viewer)

    response = client.get(reverse("dataset-detail", args=[dataset.pk]))

    assert response.status_code == 200
    assert reverse("run-create", args=[project.pk]) not in response.content.decode()


def test_dataset_detail_outsider_404(client, home, project, owner, outsider):
    dataset = services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=owner)
    client.force_login(outsider)

    assert client.get(reverse("dataset-detail", args=[dataset.pk])).status_code == 404


# Services


def test_create_dataset_rejects_viewer(home, project, viewer):
    with pytest.raises(services.PermissionDenied) as caught:
        services.create_dataset(project, ContentFile(IRIS, name="iris.csv"), "iris", user=viewer)

    assert str(caught.value) == "Only owners and maintainers can upload datasets to digits."
    assert not Dataset.objects.exists()


def test_create_project_rejects_viewer(team, viewer):
    with pytest.raises(services.PermissionDenied) as caught:
        services.create_project(team, "audio", "", viewer)

    assert str(caught.value) == "Only owners and maintainers of team vision can create projects in it."
    assert not Project.objects.filter(name="audio").exists()


def test_ensure_demo_project_idempotent(home, owner):
    first = services.ensure_demo_project(owner)
    files_after_first = stored_files(home)
    second = services.ensure_demo_project(owner)

    assert second == first
    assert first.name == "demo"
    assert first.team.name == "demo"
    assert Team.objects.filter(name="demo").count() == 1
    assert Project.objects.filter(team__name="demo").count() == 1
    assert Membership.objects.get(team=first.team, user=owner).role == Role.OWNER
    datasets = {dataset.name: dataset for dataset in first.datasets.all()}
    assert sorted(datasets) == ["breast_cancer", "digits", "wine"]
    assert all(dataset.builtin for dataset in datasets.values())
    assert datasets["digits"].input_shape == [8, 8]
    assert datasets["digits"].num_classes == 10
    assert datasets["wine"].num_rows == 178
    assert datasets["breast_cancer"].class_names == ["benign", "malignant"]
    assert all(dataset.absolute_path.is_file() for dataset in datasets.values())
    assert stored_files(home) == files_after_first
    assert len(files_after_first) == 3
    assert temp_files(home) == []


def test_ensure_demo_project_restores_missing_dataset(home, owner):
    project = services.ensure_demo_project(owner)
    project.datasets.get(name="wine").delete()

    services.ensure_demo_project(owner)

    assert sorted(project.datasets.values_list("name", flat=True)) == ["breast_cancer", "digits", "wine"]
