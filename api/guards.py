"""The app-wide hooks: one before every view (timing, Host, Origin, token, body, in that order), one after it.

One hook each way rather than one per concern: Flask looks up and wraps every hook on every request, and each
reaches the request through its context proxy; here it is reached once and handed to each check in turn. The
first check to refuse ends the request (with its error, or the web UI's page asking for a token), as a hook of
its own would; the answer, a refusal included, is timed after.
"""

from __future__ import annotations

from flask import Flask, Request, Response, request

from api import auth, bodies, hosts, metrics, origin
from nectar.auth import TokenChecker
from nectar.config import Settings
from nectar.sessions import SessionSigner


def install(app: Flask, settings: Settings, checker: TokenChecker, sessions: SessionSigner) -> None:
    """Check every request before its view and time its answer after (see the module)."""
    metrics.install(app)
    allowed = hosts.install(app, settings)
    auth.install(app, checker, sessions)
    public_url = settings.public_url
    config = app.config

    @app.before_request
    def checked() -> tuple[str, int] | Response | None:
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        metrics.start(current)  # first: every answer is timed, refusals included
        hosts.refuse_foreign_host(current, allowed)  # a foreign Host learns nothing, not even "401"
        origin.refuse_cross_site_write(current, allowed, public_url)
        if checker.enabled:
            page = auth.authorize(current, checker, sessions)
            if page is not None:
                return page
        # after the token: a body is read only for a client that may send it
        bodies.read_whole_chunked_body(current, config["MAX_CONTENT_LENGTH"])
        return None

    @app.after_request
    def timed(response: Response) -> Response:
        return metrics.observe(request._get_current_object(), response)  # type: ignore[attr-defined]
