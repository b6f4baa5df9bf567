"""Bearer tokens on the API: writes need a write token, reads a token too unless NECTAR_AUTH_READS=false.

Always open: ``/healthz`` (for load balancers), the OpenAPI document and Swagger UI, and
``/api/files`` (its URLs carry their own expiring signature, like S3's presigned URLs).
"""

from __future__ import annotations

from flask import Flask, request

from nectar.auth import Scope, TokenChecker

#: endpoints anyone may call
OPEN_ENDPOINTS = frozenset({"health.Health", "files.File", "static"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token, when the service is configured with NECTAR_API_TOKENS or NECTAR_API_TOKENS_FILE.",
}


def install(app: Flask, checker: TokenChecker) -> None:
    """Check every request's token before its view runs (nothing to do when no token is configured)."""
    app.extensions["nectar_tokens"] = checker
    if not checker.enabled:
        return

    @app.before_request
    def authorize() -> None:
        endpoint = request.endpoint or ""
        if endpoint in OPEN_ENDPOINTS or endpoint.startswith("api-docs."):
            return
        needs = Scope.READ if request.method in READ_METHODS else Scope.WRITE
        checker.authorize(request.headers.get("Authorization"), needs)
