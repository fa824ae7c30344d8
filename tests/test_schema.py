"""The OpenAPI schema at /api/v1/schema/ and the Swagger UI page at /api/v1/docs/."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from drf_spectacular.drainage import reset_generator_stats
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

SWAGGER_BUNDLE = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"


@pytest.fixture
def schema(db):
    response = Client().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi(schema):
    # Raises jsonschema.ValidationError when the document breaks the OpenAPI 3 schema.
    validate_schema(schema)

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "DeepSeek Studio API"


def test_schema_documents_run_endpoints(schema):
    paths = schema["paths"]

    assert set(paths["/api/v1/runs/"]) == {"get", "post"}
    assert set(paths["/api/v1/runs/{id}/"]) == {"get"}
    assert set(paths["/api/v1/runs/{id}/cancel/"]) == {"post"}
    assert set(paths["/api/v1/runs/{id}/metrics/"]) == {"get"}
    assert set(paths["/api/v1/auth/token/"]) == {"post", "delete"}


def test_schema_run_create_contract(schema):
    create = schema["paths"]["/api/v1/runs/"]["post"]
    body = schema["components"]["schemas"]["RunCreate"]

    assert list(create["requestBody"]["content"]) == ["application/json"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunCreate"}
    assert set(body["properties"]) == {"project", "dataset", "name", "config"}
    assert set(body["required"]) == {"project", "dataset"}
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Run"}
    for code in ("400", "403"):
        assert create["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"}


def test_schema_cancel_and_metrics_responses(schema):
    cancel = schema["paths"]["/api/v1/runs/{id}/cancel/"]["post"]
    metrics = schema["paths"]["/api/v1/runs/{id}/metrics/"]["get"]

    assert set(cancel["responses"]) == {"200", "403", "404", "409"}
    assert cancel["operationId"] == "runs_cancel"
    assert "requestBody" not in cancel
    assert metrics["operationId"] == "runs_metrics"
    query = {p["name"]: p["schema"] for p in metrics["parameters"] if p["in"] == "query"}
    assert query["after"] == {"type": "integer", "minimum": 0, "default": 0}
    assert query["limit"] == {"type": "integer", "minimum": 1, "maximum": 20000, "default": 5000}
    assert query["keys"]["type"] == "string"
    page = schema["components"]["schemas"]["MetricsPage"]
    assert set(page["properties"]) == {"points", "last_seq", "has_more"}


def test_schema_run_fields(schema):
    run = schema["components"]["schemas"]["Run"]["properties"]

    for field in ("id", "project", "dataset", "name", "status", "config", "epoch", "total_epochs", "step",
                  "total_steps", "progress", "eta_seconds", "duration_seconds", "summary", "confusion_matrix",
                  "error", "diverged", "mlflow_run_id", "created_at", "started_at", "finished_at", "url",
                  "mlflow_url"):
        assert field in run
    assert run["mlflow_url"]["nullable"] is True
    assert run["url"]["format"] == "uri"


def test_schema_list_filters(schema):
    listing = schema["paths"]["/api/v1/runs/"]["get"]
    query = {p["name"]: p["schema"] for p in listing["parameters"]}

    assert query["project"]["type"] == "integer"
    assert query["status"]["enum"] == ["queued", "running", "succeeded", "failed", "cancelled", "pruned"]
    assert {"limit", "offset"} <= set(query)


def test_schema_generation_no_run_warnings(db, capsys):
    # drf-spectacular 0.30 prints each warning once per process, so clear what
    # earlier tests may have printed.
    reset_generator_stats()
    SchemaGenerator().get_schema(request=None, public=True)

    output = capsys.readouterr().err
    ours = [line for line in output.splitlines()
            if re.search(r"training/|RunViewSet|api_tokens|TokenView|api_errors", line)]
    assert ours == []


def test_docs_page_uses_local_assets(db):
    response = Client().get("/api/v1/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f"/static/{SWAGGER_BUNDLE}" in page
    assert "/api/v1/schema/" in page
    assert re.findall(r'(?:src|href)="(https?://[^"]+)"', page) == []


def test_docs_assets_served(db, settings):
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True

    assert finders.find(SWAGGER_BUNDLE) is not None
    response = Client().get(f"/static/{SWAGGER_BUNDLE}")

    assert response.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(response.streaming_content)


def test_schema_documents_study_endpoints(schema):
    paths = schema["paths"]

    assert set(paths["/api/v1/studies/"]) == {"get", "post"}
    assert set(paths["/api/v1/studies/{id}/"]) == {"get"}
    assert set(paths["/api/v1/studies/{id}/stop/"]) == {"post"}
    assert set(paths["/api/v1/studies/{id}/promote/"]) == {"post"}
    assert set(paths["/api/v1/studies/{id}/trials/"]) == {"get"}
    assert set(paths["/api/v1/studies/{id}/trials/{number}/"]) == {"get"}
    body = schema["components"]["schemas"]["StudyCreate"]
    assert {"project", "dataset", "space"} <= set(body["required"])
    promote = paths["/api/v1/studies/{id}/promote/"]["post"]
    assert promote["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Run"}
