"""flask-smorest's private names that api/smorest_internals.py relies on are there and behave as it relies on.

A failure here means the flask-smorest release installed changed under the seam: read the test's message,
adapt the seam (one module), and only then widen flask-smorest's pin in pyproject.toml.
"""

from __future__ import annotations

import inspect
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from werkzeug.exceptions import HTTPException

from api.smorest_internals import OneHandlerApi, add_undocumented_url_rule, documented_only


class Teapot(Exception):
    """An exception of ours, for the one handler to answer."""


class TeapotApi(OneHandlerApi):
    """An Api whose one handler answers :class:`Teapot` too, saying what it answered."""

    HANDLED_ERRORS = (Teapot,)

    def handle_http_exception(self, error: Exception) -> tuple[dict[str, str], int]:
        return {"handled": type(error).__name__}, 418


class Count(ma.Schema):
    n = ma.fields.Integer()


def make_app(api_class: type[flask_smorest.Api]) -> tuple[flask.Flask, flask_smorest.Api]:
    app = flask.Flask(__name__)
    app.config.update(API_TITLE="seam", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = api_class(app)
    blp = flask_smorest.Blueprint("probe", __name__)

    def counted() -> dict[str, int]:
        return {"n": 1}

    view = documented_only(counted, [blp.response(200, Count), blp.alt_response(404, description="Gone.")])
    assert view is counted, "documented_only wrapped the view"
    blp.route("/counted")(view)

    def page() -> str:
        return "a page"

    add_undocumented_url_rule(blp, "/page", page)
    add_undocumented_url_rule(blp, "/posted", page, "posted_page", methods=["POST"])

    @blp.route("/teapot")
    def teapot() -> None:
        raise Teapot()

    api.register_blueprint(blp)
    return app, api


def test_the_private_names_the_seam_overrides_are_there() -> None:
    assert list(inspect.signature(flask_smorest.Api._register_error_handlers).parameters) == ["self"]
    init_app = flask_smorest.Api.init_app.__code__.co_names
    assert "_register_error_handlers" in init_app, "flask-smorest's init_app no longer registers its error handlers"
    assert issubclass(flask_smorest.Blueprint, flask.Blueprint), "flask-smorest's Blueprint is no flask Blueprint"
    assert flask_smorest.Blueprint.add_url_rule is not flask.Blueprint.add_url_rule, "it no longer documents there"


def test_what_registering_a_blueprint_does_is_what_the_seam_splits_in_two() -> None:
    """DocumentedOnFirstReadApi registers the routes itself and documents them on the document's first read."""
    names = flask_smorest.Api.register_blueprint.__code__.co_names
    for name in ("_app", "extensions", "register_blueprint", "register_views_in_doc", "spec", "tag"):
        assert name in names, f"flask-smorest's Api.register_blueprint no longer uses {name}"
    parameters = list(inspect.signature(flask_smorest.Blueprint.register_views_in_doc).parameters)
    assert parameters == ["self", "api", "app", "spec", "name", "parameters"], parameters


def handled(app: flask.Flask) -> dict[type[Exception], Any]:
    """The exception classes (not status codes) the app's error handlers answer, and their handlers."""
    return dict(app.error_handler_spec[None][None])


def test_flask_smorest_answers_http_errors_only_and_ours_answers_ours_too() -> None:
    """Ours replaces flask-smorest's registration: it must not drop a handler flask-smorest adds in a release."""
    plain, plain_api = make_app(flask_smorest.Api)
    assert handled(plain) == {HTTPException: plain_api.handle_http_exception}

    app, api = make_app(TeapotApi)
    assert handled(app) == {HTTPException: api.handle_http_exception, Teapot: api.handle_http_exception}
    client = app.test_client()
    for path, error in (("/teapot", "Teapot"), ("/nowhere", "NotFound")):
        answer = client.get(path)
        assert (answer.status_code, answer.get_json()) == (418, {"handled": error})


def test_a_view_documented_only_is_documented_and_a_page_routed_past_the_blueprint_is_not() -> None:
    app, api = make_app(flask_smorest.Api)
    paths = api.spec.to_dict()["paths"]
    assert {"200", "404"} <= set(paths["/counted"]["get"]["responses"]), "flask-smorest no longer reads _apidoc"
    assert "/page" not in paths and "/posted" not in paths
    client = app.test_client()
    assert client.get("/counted").get_json() == {"n": 1}
    assert client.get("/page").get_data(as_text=True) == "a page"
    assert client.post("/posted").get_data(as_text=True) == "a page" and client.get("/posted").status_code == 405
    with app.test_request_context():
        assert flask.url_for("probe.posted_page") == "/posted"
