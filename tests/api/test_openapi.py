"""The OpenAPI document: valid, and every endpoint documents its answers and errors."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient


@pytest.fixture
def spec(client: FlaskClient) -> dict:
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def test_the_document_validates(spec: dict) -> None:
    # imported here, not with the module (~0.22 s of CPU): every pytest-xdist worker collects this file, one runs it
    from openapi_spec_validator import validate

    validate(spec)


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/chains", "get", {"200"}),
        ("/api/chains/{chain_type}", "get", {"200", "404"}),
        ("/api/chains/{chain_type}/{chain}", "get", {"200", "404"}),
        ("/api/chains/{chain_type}/{chain}/{task}", "get", {"200", "404"}),
        ("/api/chains/{chain_type}/{chain}/{task}", "post", {"200", "202", "404", "422", "503"}),
        ("/api/chainstatus", "get", {"200", "400", "404", "422", "503"}),
        ("/api/files", "get", {"200", "400", "403", "404", "422"}),
        ("/api/logs", "get", {"200", "400", "404", "422"}),
        ("/healthz", "get", {"200", "503"}),
        ("/", "get", {"200"}),
    ],
)
def test_every_endpoint_documents_its_responses(spec: dict, path: str, method: str, codes: set[str]) -> None:
    responses = spec["paths"][path][method]["responses"]
    assert codes <= set(responses), responses


def test_logs_are_documented_as_text(spec: dict) -> None:
    assert "text/plain" in spec["paths"]["/api/logs"]["get"]["responses"]["200"]["content"]


def test_errors_are_documented_as_the_envelope(spec: dict) -> None:
    error = spec["components"]["schemas"]["ErrorEnvelope"]["properties"]
    assert {"data", "message", "status", "errors"} <= set(error)


def test_swagger_ui_is_served_with_its_files_from_the_api_itself(client: FlaskClient) -> None:
    answer = client.get("/api/docs")
    assert answer.status_code == 200 and b"swagger" in answer.data.lower()
    files = [name for name in re.findall(r'(?:src|href)="([^"]+)"', answer.get_data(as_text=True)) if name != "data:,"]
    swagger = [name for name in files if name.startswith("/api/docs/static/swagger-ui")]
    assert len(swagger) == 2 and files == [*swagger, "/ui/static/docs.js"], files  # and the script that starts it
    for name in files:  # no CDN: the page works on a machine without internet
        served = client.get(name)
        assert served.status_code == 200 and served.mimetype in {"text/javascript", "text/css"}, name


@pytest.mark.parametrize(
    ("schema", "fields"),
    [
        ("Step", {"stdout_url", "stderr_url"}),
        ("Status", {"stdout_url", "stderr_url", "logs_task", "logs_note"}),
        ("RunDetail", {"steps", "stdout_url", "stderr_url", "logs_task", "logs_note"}),
        ("Check", {"ok", "status", "detail"}),
    ],
)
def test_the_log_links_and_health_words_are_documented(spec: dict, schema: str, fields: set[str]) -> None:
    properties = spec["components"]["schemas"][schema]["properties"]
    assert fields <= set(properties), properties
    assert all(properties[name].get("description") for name in fields - {"steps"}), properties
