"""The Flask application factory: ``gunicorn 'app:create_app()'``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from api import auth, docs, fast_path, guards, register_blueprints, warm
from api.errors import NectarApi
from api.routing import LazyBuildRule
from api.status_path import StatusPath
from api.submit_path import SubmitPath
from nectar.auth import TokenChecker
from nectar.config import Settings, configure, load_luigi_config
from nectar.service import Nectar
from nectar.sessions import SessionSigner
from nectar.signing import UrlSigner, load_secret

DEFAULTS: dict[str, Any] = {
    "API_TITLE": "Datanectar",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    # Swagger UI at /api/docs is api/docs.py's, from the swagger-ui-bundle package (flask-smorest's takes a CDN)
    "API_SPEC_OPTIONS": {
        "components": {"securitySchemes": {"bearerAuth": auth.SECURITY_SCHEME}},
        # a token when the service is configured with some; none otherwise
        "security": [{"bearerAuth": []}, {}],
    },
}


class NectarFlask(Flask):
    """Flask, its URL builders compiled on first use (:mod:`api.routing`)."""

    url_rule_class = LazyBuildRule


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """An app for ``config``: Flask keys, and ``NECTAR_SETTINGS`` (else settings from the environment)."""
    config = dict(config or {})
    given: Settings | None = config.pop("NECTAR_SETTINGS", None)
    settings = given or Settings.from_env()
    app = NectarFlask(__name__)
    app.url_map.strict_slashes = False  # a trailing slash is the same URL (a POST, too: no redirect that drops it)
    app.config.update(DEFAULTS)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.config.from_prefixed_env("FLASK")
    app.config.update(config)
    configure(settings)
    secret = load_secret(settings)
    # a token configuration that cannot be read stops the start, rather than serving without protection
    checker = TokenChecker.from_config(settings.api_tokens, settings.api_tokens_file, settings.auth_reads)
    checks = guards.install(app, settings, checker, SessionSigner(secret))  # timing, Host, Origin, token, body
    app.extensions["nectar"] = Nectar(settings)  # its luigi.cfg checked first
    if given is None:  # a served app's process takes its luigi.cfg; one made for given settings (a test's) leaves it
        load_luigi_config(settings.luigi_config)
    app.extensions["nectar_signer"] = UrlSigner(secret, settings.url_expiry)
    api = NectarApi(app)
    register_blueprints(api)
    app.register_blueprint(docs.blp)
    # a status's 200s and a submission's answers made in front of the dispatch, through the same checks
    fast_path.install(app, checks, [StatusPath(app), SubmitPath(app)])
    warm.install(app)  # what each worker would make on its first requests, made by gunicorn's master before forking
    return app
