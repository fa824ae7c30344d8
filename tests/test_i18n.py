"""The studio in Simplified Chinese: pages, form and API errors, and the translation catalogue itself.

Pages are read after switching language with the base template's switcher
(Django's set_language view); the API takes the language from Accept-Language.
"""

import ast
import gettext
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from projects.models import Dataset
from training.models import Run, RunStatus
from training.services import create_run

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
COMPILED = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.mo"
MAKEMESSAGES_IGNORES = [".venv", "var", "tests", "bench", "mlruns", "node_modules"]

BAD_CSV = (
    b"sepal_length,sepal_width,petal_width,species\n"
    b"5.1,3.5,0.2,setosa\n"
    b"4.9,3.0,abc,versicolor\n"
)
BAD_CSV_MESSAGE = "iris.csv，第 3 行，列“petal_width”：“abc”不是数字"


@pytest.fixture
def chinese(client):
    """Return a test client that chose 简体中文 with the page's language switcher."""
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": reverse("home")})

    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    return client


@pytest.fixture
def run(project, digits_dataset, owner):
    return create_run(project, digits_dataset, {"model": "cnn", "epochs": 3}, user=owner, name="first try")


def api_client(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(user)
    return client


def upload(client, project, content=BAD_CSV, filename="iris.csv"):
    data = {"file": SimpleUploadedFile(filename, content), "name": "", "format": "", "task": "classification",
            "target_column": ""}
    return client.post(reverse("dataset-upload", args=[project.pk]), data)


def json_script(page: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert match, f"no json_script with id {element_id}"
    return json.loads(match.group(1))


# ---- Pages ------------------------------------------------------------------


def test_switcher_sets_language(chinese, owner):
    chinese.force_login(owner)

    page = chinese.get(reverse("home")).content.decode()

    assert '<html lang="zh-hans">' in page
    assert '<option value="zh-hans" selected>简体中文</option>' in page


def test_home_in_chinese(chinese, owner, project):
    chinese.force_login(owner)

    response = chinese.get(reverse("home"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>项目</h1>" in page
    assert "<h2>新建项目</h2>" in page
    assert '<label for="id_team">团队</label>' in page
    assert '<button type="submit" class="primary">创建项目</button>' in page
    assert ">退出登录</button>" in page


def test_home_project_error_in_chinese(chinese, maintainer, project):
    chinese.force_login(maintainer)

    response = chinese.post(reverse("home"), {"team": project.team.pk, "name": "digits", "description": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["团队 vision 已有名为 digits 的项目。"]


def test_project_page_in_chinese(chinese, owner, project, run):
    chinese.force_login(owner)

    response = chinese.get(reverse("project-detail", args=[project.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert ">上传数据集</a>" in page
    assert ">新建 run</a>" in page
    assert '<span class="badge status-queued" data-field="status">排队中</span>' in page
    assert "<td>分类</td>" in page
    assert json_script(page, "run-status-labels") == {
        "queued": "排队中", "running": "运行中", "succeeded": "成功", "failed": "失败", "cancelled": "已取消",
        "pruned": "已剪枝"}
    assert ">新建 study</a>" in page


def test_dataset_page_in_chinese(chinese, owner, digits_dataset):
    chinese.force_login(owner)

    response = chinese.get(reverse("dataset-detail", args=[digits_dataset.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert ">用这个数据集训练模型</a>" in page
    assert "<h2>类别分布</h2>" in page
    assert "每个样本是 shape 为 8 × 8 的数组，没有可预览的表格。" in page


def test_upload_engine_error_in_chinese(chinese, owner, project):
    chinese.force_login(owner)

    response = upload(chinese, project)

    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [BAD_CSV_MESSAGE]
    assert html.escape(BAD_CSV_MESSAGE) in response.content.decode()
    assert not Dataset.objects.exists()


def test_upload_extension_error_in_chinese(chinese, owner, project):
    chinese.force_login(owner)

    response = upload(chinese, project, filename="iris.txt")

    assert response.context["form"].errors["format"] == [
        "无法根据扩展名判断 iris.txt 的格式：请把扩展名改为 .csv、.npz 或 .zip，或者手动选择格式。"]
    assert not Dataset.objects.exists()


def run_form(dataset, **overrides) -> dict:
    data = {"dataset": dataset.pk, "name": "", "source": "fields", "model": "cnn", "hidden_sizes": "64",
            "conv_channels": "16,32", "dropout": "0.0", "optimizer": "adam", "lr": "0.003", "momentum": "0.9",
            "weight_decay": "0.0", "schedule": "constant", "batch_size": "64", "epochs": "3", "seed": "0",
            "val_split": "0.2", "early_stopping_patience": "0", "precision": "fp32", "config_json": ""}
    data.update(overrides)
    return data


def test_run_form_in_chinese(chinese, owner, project, digits_dataset):
    chinese.force_login(owner)

    response = chinese.get(reverse("run-create", args=[project.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>新建 run</h1>" in page
    assert '<label for="id_lr">学习率（lr）</label>' in page
    assert '<label for="id_batch_size">Batch size</label>' in page
    assert '<option value="step">阶梯衰减</option>' in page
    assert ">创建 run</button>" in page


def test_run_form_bad_lr_in_chinese(chinese, owner, project, digits_dataset):
    chinese.force_login(owner)

    response = chinese.post(reverse("run-create", args=[project.pk]), run_form(digits_dataset, lr="-1"))

    assert response.status_code == 200
    assert response.context["form"].errors["lr"] == ["lr: 必须在区间 (0.0, 10.0] 内，实际为 -1.0"]
    assert '<div class="field-error" role="alert">lr: 必须在区间 (0.0, 10.0] 内，实际为 -1.0</div>' \
        in response.content.decode()
    assert Run.objects.count() == 0


def test_run_form_bad_sizes_in_chinese(chinese, owner, project, digits_dataset):
    chinese.force_login(owner)

    response = chinese.post(reverse("run-create", args=[project.pk]),
                            run_form(digits_dataset, hidden_sizes="128,wide"))

    assert response.context["form"].errors["hidden_sizes"] == [
        "hidden_sizes: 必须是用英文逗号分隔的整数列表，例如 128,64，实际为 '128,wide'"]
    assert Run.objects.count() == 0


def test_run_created_message_in_chinese(chinese, owner, project, digits_dataset):
    chinese.force_login(owner)

    response = chinese.post(reverse("run-create", args=[project.pk]), run_form(digits_dataset, name="基线"),
                            follow=True)

    run = Run.objects.get()
    assert run.name == "基线"
    assert run.status == RunStatus.QUEUED
    assert [str(message) for message in response.context["messages"]] == ["Run“基线”已进入队列。"]


def test_run_page_in_chinese(chinese, owner, run):
    chinese.force_login(owner)

    response = chinese.get(reverse("run-detail", args=[run.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert '<span id="run-status" class="badge status-queued">排队中</span>' in page
    assert '<button type="submit" class="button danger">取消 run</button>' in page
    assert "<h2>准确率</h2>" in page
    assert "<h2>学习率</h2>" in page
    assert "<h2>日志</h2>" in page
    labels = json_script(page, "run-live")["labels"]
    assert labels["reconnecting"] == "正在重连…"
    assert labels["nonfinite"] == "%(key)s 在 step %(step)s 时为 %(value)s，曲线在该处断开。"
    assert labels["statuses"]["cancelled"] == "已取消"


def test_cancel_finished_run_message_in_chinese(chinese, maintainer, run):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    chinese.force_login(maintainer)

    response = chinese.post(reverse("run-cancel", args=[run.pk]), follow=True)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert [str(message) for message in response.context["messages"]] == [
        "Run“first try”已经结束，没有取消任何内容。"]


def test_admin_field_names_in_chinese(chinese, django_user_model, run):
    ada = django_user_model.objects.create_superuser("ada", "ada@example.com", "secret-pass-123")
    chinese.force_login(ada)

    response = chinese.get(reverse("admin:training_run_change", args=[run.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<label>项目:</label>" in page
    assert "<label>数据集:</label>" in page
    assert "<label>创建者:</label>" in page


# ---- API ----------------------------------------------------------------------


def test_api_bad_lr_in_chinese(owner, project, digits_dataset):
    body = {"project": project.pk, "dataset": digits_dataset.pk, "config": {"lr": 0}}

    response = api_client(owner).post("/api/v1/runs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": [
        {"field": "config.lr", "code": "invalid", "message": "lr: 必须在区间 (0.0, 10.0] 内，实际为 0.0"}]}
    assert Run.objects.count() == 0


def test_api_cancel_finished_run_in_chinese(owner, run):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)

    response = api_client(owner).post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 409
    assert response.json() == {"errors": [
        {"field": None, "code": "already_finished", "message": f"Run {run.pk} 已经结束（成功），无法取消。"}]}
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is None


def test_api_dataset_error_in_chinese(owner, project):
    upload_file = SimpleUploadedFile("iris.csv", BAD_CSV)

    response = api_client(owner).post("/api/v1/datasets/", {"project": project.pk, "file": upload_file},
                                      format="multipart")

    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "file", "code": "not_a_number", "message": BAD_CSV_MESSAGE}]}
    assert not Dataset.objects.exists()


def test_api_stays_english_without_header(owner, run):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    client = APIClient()
    client.force_login(owner)

    response = client.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["errors"][0]["message"] == (
        f"Run {run.pk} has already finished (Succeeded), so it cannot be cancelled.")


# ---- The catalogue ----------------------------------------------------------------


def parse_po(path: Path) -> list[dict]:
    """Parse a .po file into entries: msgctxt, msgid, msgid_plural, msgstr (list), flags and obsolete."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry = {"msgctxt": None, "msgid": None, "msgid_plural": None, "msgstr": [], "flags": set(),
                 "obsolete": False}
        current = None
        for line in block.strip().splitlines():
            if line.startswith("#~"):
                entry["obsolete"] = True
                continue
            if line.startswith("#,"):
                entry["flags"].update(flag.strip() for flag in line[2:].split(","))
                continue
            if line.startswith("#"):
                continue
            keyword, _space, rest = line.partition(" ")
            if line.startswith('"'):
                value = ast.literal_eval(line)
            else:
                value = ast.literal_eval(rest)
                current = keyword
                if keyword.startswith("msgstr"):
                    entry["msgstr"].append("")
                else:
                    entry[keyword] = ""
            if current.startswith("msgstr"):
                entry["msgstr"][-1] += value
            else:
                entry[current] += value
        if entry["msgid"] is not None or entry["obsolete"]:
            entries.append(entry)
    return entries


def messages_of(entries: list[dict]) -> list[dict]:
    """Return the entries that are messages: not the header, not obsolete."""
    return [entry for entry in entries if entry["msgid"] and not entry["obsolete"]]


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\(\w+\)[sdr]|\{\w+\}", text))


def test_catalog_complete():
    entries = parse_po(CATALOG)
    messages = messages_of(entries)

    assert len(messages) > 300
    assert [entry["msgid"] for entry in messages if "fuzzy" in entry["flags"]] == []
    assert [entry["msgid"] for entry in messages if not all(entry["msgstr"])] == []
    assert [entry["msgid"] for entry in messages if entry["msgid_plural"] and len(entry["msgstr"]) != 1] == []
    assert [entry for entry in entries if entry["obsolete"]] == []
    header = entries[0]["msgstr"][0]
    assert "Plural-Forms: nplurals=1; plural=0;" in header
    assert "Language: zh_Hans" in header


def test_catalog_keeps_placeholders():
    for entry in messages_of(parse_po(CATALOG)):
        source = entry["msgid_plural"] or entry["msgid"]
        for translation in entry["msgstr"]:
            assert placeholders(translation) == placeholders(source), entry["msgid"]


def test_catalog_keeps_engine_messages():
    """Messages the engines mark with their own gettext_noop reach the catalogue."""
    msgids = {entry["msgid"] for entry in messages_of(parse_po(CATALOG))}

    assert "%(file)s, line %(line)d, column '%(column)s': '%(value)s' is not a number" in msgids
    assert "%(file)s: not a ZIP archive" in msgids
    assert "must lie in %(interval)s, got %(value)s" in msgids
    assert "unknown parameter; expected one of %(known)s" in msgids


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="needs GNU gettext's msgfmt")
def test_compiled_catalog_matches_po(tmp_path):
    fresh = tmp_path / "django.mo"

    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(CATALOG)], check=True)

    with open(fresh, "rb") as handle:
        expected = gettext.GNUTranslations(handle)._catalog
    with open(COMPILED, "rb") as handle:
        committed = gettext.GNUTranslations(handle)._catalog
    assert committed == expected, "django.mo is stale: run manage.py compilemessages --ignore=.venv"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs GNU gettext's xgettext")
def test_catalog_covers_source(tmp_path):
    """Every string marked in the source has an entry in the catalogue.

    makemessages runs on a copy of the source, so the repository's catalogue is not rewritten.
    """
    copy = tmp_path / "src"
    ignored = shutil.ignore_patterns(*MAKEMESSAGES_IGNORES, "__pycache__", "*.mo", "*.egg-info", ".git")
    shutil.copytree(ROOT, copy, ignore=ignored, symlinks=True)

    subprocess.run([sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete",
                    *[f"--ignore={name}" for name in MAKEMESSAGES_IGNORES]],
                   cwd=copy, check=True, capture_output=True,
                   env={**os.environ, "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_HOME": str(tmp_path)})

    copied_catalog = copy / CATALOG.relative_to(ROOT)
    extracted = {(entry["msgctxt"], entry["msgid"]) for entry in messages_of(parse_po(copied_catalog))}
    translated = {(entry["msgctxt"], entry["msgid"]) for entry in messages_of(parse_po(CATALOG))}
    assert sorted(extracted - translated, key=str) == [], (
        "strings without a translation: run manage.py makemessages -l zh_Hans (see this file for the ignores), "
        "translate them and run compilemessages")



@pytest.mark.django_db(transaction=True)
def test_api_bad_search_space_in_chinese(owner, project, digits_dataset):
    body = {"project": project.pk, "dataset": digits_dataset.pk,
            "space": {"lr": {"type": "float", "low": 0.1, "high": 0.001}}}

    response = api_client(owner).post("/api/v1/studies/", body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "space.lr", "code": "invalid",
                                          "message": "区间为空：下限 0.1 大于上限 0.001"}]


@pytest.mark.django_db(transaction=True)
def test_study_page_in_chinese(chinese, owner, project, digits_dataset):
    from tuning.services import create_study

    study = create_study(project, digits_dataset, name="搜索", user=owner, base_config={"epochs": 2},
                         space={"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}, n_trials=2)
    chinese.force_login(owner)

    page = chinese.get(reverse("study-detail", args=[study.pk])).content.decode()

    assert "停止 study" in page
    assert "<h2>搜索空间</h2>" in page or ">搜索空间<" in page
    assert "Trial 列表" in page
