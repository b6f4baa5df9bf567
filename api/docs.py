"""Swagger UI at /api/docs, from the pinned ``swagger-ui-bundle`` package: the page works without internet,
under the web UI's Content-Security-Policy (its own scripts only, never framed)."""

from __future__ import annotations

import flask
from flask import current_app, render_template, url_for
from swagger_ui_bundle import swagger_ui_path

from api.ui import secure

#: a plain Flask blueprint: the page and its files stay out of the OpenAPI document
blp = flask.Blueprint("docs", __name__, static_folder=swagger_ui_path, static_url_path="/api/docs/static")


blp.after_request(secure)


@blp.route("/api/docs")
def swagger_ui() -> str:
    """The Swagger UI page, its script and style served by this API rather than a CDN."""
    return render_template(
        "docs.html",  # api/templates (not flask-smorest's swagger_ui.html): started by docs.js, no inline script
        title=current_app.config["API_TITLE"],
        spec_url=url_for("api-docs.openapi_json"),
        swagger_ui_url=url_for("docs.static", filename=""),
    )
