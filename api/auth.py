"""Bearer tokens on the API: writes need a write token, reads a token too unless NECTAR_AUTH_READS=false.

Always open: ``/healthz`` (for load balancers), the OpenAPI document and Swagger UI, the web UI's
static files, and ``/api/files`` (its URLs carry their own expiring signature, like S3's
presigned URLs). A browser cannot send a header when it opens a page, so the web UI's pages (GET
only) also take the ``nectar_session`` cookie: the page's token field sends the token once, in the header, to
``POST /ui/session``, which answers with that cookie (opaque, ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over
HTTPS: see :mod:`nectar.sessions`); ``DELETE /ui/session`` ends it. A write always needs the header, so a page of
another site cannot make the browser write with that cookie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, render_template, request
from werkzeug.http import parse_cookie

from nectar.auth import Scope, TokenChecker, Unauthenticated
from nectar.sessions import SessionSigner

if TYPE_CHECKING:
    from api.guards import Asked

#: endpoints anyone may call (``session`` checks the token it is given itself)
OPEN_ENDPOINTS = frozenset(
    {"health.Health", "files.File", "static", "ui.static", "docs.swagger_ui", "docs.static", "session"}
)
SESSION_COOKIE = "nectar_session"
#: the cookie that held the raw token before sessions: cleared whenever a session opens or ends
RAW_TOKEN_COOKIE = "nectar_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token, when the service is configured with NECTAR_API_TOKENS or NECTAR_API_TOKENS_FILE.",
}


def served_securely() -> bool:
    """Whether the browser reached the API over HTTPS: the request's scheme (gunicorn takes a proxy's
    ``X-Forwarded-Proto`` only from the addresses in ``FORWARDED_ALLOW_IPS``), or an https public URL."""
    public = current_app.extensions["nectar"].settings.public_url or ""
    return request.is_secure or public.startswith("https:")


def end_session(response: Response) -> Response:
    secure = served_securely()
    for name in (SESSION_COOKIE, RAW_TOKEN_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="Strict")
    return response


def session() -> Response:
    """``POST`` with ``Authorization: Bearer <token>``: a session cookie for the web UI's pages; ``DELETE``: none."""
    response = Response(status=204)
    if request.method == "DELETE":
        return end_session(response)
    checker: TokenChecker = current_app.extensions["nectar_tokens"]
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    entry = checker.identify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if entry is None:
        raise Unauthenticated("a session opens with a valid API token: send 'Authorization: Bearer <token>'")
    sessions: SessionSigner = current_app.extensions["nectar_sessions"]
    response.delete_cookie(RAW_TOKEN_COOKIE, path="/")
    response.set_cookie(
        SESSION_COOKIE,
        sessions.open(entry),
        max_age=sessions.lifetime,
        path="/",
        secure=served_securely(),
        httponly=True,
        samesite="Strict",
    )
    return response


def install(app: Flask, checker: TokenChecker, sessions: SessionSigner) -> None:
    """Keep the token checker and session signer in ``app``, and open ``/ui/session``; :func:`authorize` checks
    every request's token before its view runs (:mod:`api.guards`; nothing to do when no token is configured)."""
    app.extensions["nectar_tokens"] = checker
    app.extensions["nectar_sessions"] = sessions
    app.add_url_rule("/ui/session", "session", session, methods=["POST", "DELETE"])


def authorize(request: Asked, checker: TokenChecker, sessions: SessionSigner) -> tuple[str, int] | Response | None:
    """None when ``request`` may reach its view; a web UI page asking for a token when it may not, else
    :class:`Unauthenticated` (or a scope refusal) raised. Only called when ``checker`` is enabled. Its headers are
    read from the environ, as werkzeug's ``request.headers`` and ``request.cookies`` read them."""
    endpoint = request.endpoint or ""
    if endpoint in OPEN_ENDPOINTS or endpoint.startswith("api-docs."):
        return None
    needs = Scope.READ if request.method in READ_METHODS else Scope.WRITE
    environ = request.environ
    header = environ.get("HTTP_AUTHORIZATION")
    page = endpoint.startswith("ui.") and needs == Scope.READ
    cookie = parse_cookie(environ.get("HTTP_COOKIE", "")).get(SESSION_COOKIE) if header is None and page else None
    try:
        if cookie is None or not checker.protect_reads:
            checker.authorize(header, needs)
        elif sessions.entry(cookie, checker.entries) is None:
            raise Unauthenticated("the session has ended")
    except Unauthenticated as exc:
        if not page:
            raise
        message = f"{exc}. Enter an API token in the field above."
        html = render_template("error.html", title="API token needed", message=message, needs_token=True)
        return end_session(Response(html, status=401, mimetype="text/html")) if cookie else (html, 401)
    return None
