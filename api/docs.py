"""Swagger UI at /api/docs, from the pinned ``swagger-ui-bundle`` package: the page works without internet."""

from __future__ import annotations

import flask
from flask import current_app, render_template, url_for
from swagger_ui_bundle import swagger_ui_path

#: a plain Flask blueprint: the page and its files stay out of the OpenAPI document
blp = flask.Blueprint("docs", __name__, static_folder=swagger_ui_path, static_url_path="/api/docs/static")


@blp.route("/api/docs")
def swagger_ui() -> str:
    """flask-smorest's Swagger UI page, its script and style served by this API rather than a CDN."""
    return render_template(
        "swagger_ui.html",  # flask-smorest's own (its api-docs blueprint's templates)
        title=current_app.config["API_TITLE"],
        spec_url=url_for("api-docs.openapi_json"),
        swagger_ui_url=url_for("docs.static", filename=""),
        swagger_ui_config={},
    )
