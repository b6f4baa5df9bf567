"""The OpenAPI document is written when it is first read, not when the app is created, and it is the document
flask-smorest writes as each blueprint is registered: the same bytes at /api/openapi.json, /api/docs served."""

from __future__ import annotations

from typing import Any

import flask_smorest
import pytest
from flask import Flask

from api.errors import NectarApi
from nectar.config import Settings
from tests.api.conftest import build_app


@pytest.fixture
def documented(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the blueprints flask-smorest writes into a document, as it writes them."""
    names: list[str] = []
    register_views_in_doc = flask_smorest.Blueprint.register_views_in_doc

    def noting(blp: flask_smorest.Blueprint, *args: Any, **kwargs: Any) -> None:
        names.append(kwargs["name"])
        register_views_in_doc(blp, *args, **kwargs)

    monkeypatch.setattr(flask_smorest.Blueprint, "register_views_in_doc", noting)
    return names


def document(app: Flask) -> bytes:
    answer = app.test_client().get("/api/openapi.json")
    assert answer.status_code == 200
    return answer.data


def test_creating_the_app_writes_no_documentation_and_the_first_read_writes_it_all(
    settings: Settings, documented: list[str]
) -> None:
    app = build_app(settings)
    assert documented == [], "create_app documented the views"
    assert app.test_client().get("/api/chains").status_code == 200
    assert documented == []

    document(app)

    assert len(documented) == len(app.blueprints) - 2  # all but the two undocumented: flask-smorest's and the docs page
    assert documented == list(dict.fromkeys(documented)), "a blueprint was documented twice"
    document(app)
    assert len(documented) == len(app.blueprints) - 2


def test_the_document_read_first_is_the_one_written_at_registration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = document(build_app(settings))
    # flask-smorest's own registration, which documents each blueprint as it registers it
    monkeypatch.setattr(NectarApi, "register_blueprint", flask_smorest.Api.register_blueprint)
    eager = build_app(settings)
    assert eager.extensions["flask-smorest"]["apis"][""]["ext_obj"]._undocumented == []

    assert lazy == document(eager)


def test_the_docs_page_serves_the_document(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/api/docs")
    assert page.status_code == 200 and b"/api/openapi.json" in page.data
    assert client.get("/api/openapi.json").get_json()["paths"]
