"""Bearer tokens on the API: writes need a write token, reads a token too unless NECTAR_AUTH_READS=false.

Always open: ``/healthz`` (for load balancers), the OpenAPI document and Swagger UI, the web UI's
static files, and ``/api/files`` (its URLs carry their own expiring signature, like S3's
presigned URLs). A browser cannot send a header when it opens a page, so the web UI's pages (GET
only) also take the token from the ``nectar_token`` cookie its token field sets; a write always
needs the header, so a page of another site cannot make the browser write with that cookie.
"""

from __future__ import annotations

from urllib.parse import unquote

from flask import Flask, render_template, request

from nectar.auth import Scope, TokenChecker, Unauthenticated

#: endpoints anyone may call
OPEN_ENDPOINTS = frozenset({"health.Health", "files.File", "static", "ui.static", "docs.swagger_ui", "docs.static"})
TOKEN_COOKIE = "nectar_token"
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
    def authorize() -> tuple[str, int] | None:
        endpoint = request.endpoint or ""
        if endpoint in OPEN_ENDPOINTS or endpoint.startswith("api-docs."):
            return None
        needs = Scope.READ if request.method in READ_METHODS else Scope.WRITE
        header = request.headers.get("Authorization")
        page = endpoint.startswith("ui.") and needs == Scope.READ
        if header is None and page and request.cookies.get(TOKEN_COOKIE):
            header = f"Bearer {unquote(request.cookies[TOKEN_COOKIE])}"
        try:
            checker.authorize(header, needs)
        except Unauthenticated as exc:
            if not page:
                raise
            message = f"{exc}. Enter an API token in the field above."
            return render_template("error.html", title="API token needed", message=message, needs_token=True), 401
        return None
