"""The app-wide hooks: one before every view (timing, Host, Origin, token, body, in that order), one after it.

One hook each way rather than one per concern: Flask looks up and wraps every hook on every request, and each
reaches the request through its context proxy; here it is reached once and handed to each check in turn. The
first check to refuse ends the request (with its error, or the web UI's page asking for a token), as a hook of
its own would; the answer, a refusal included, is timed after. The checks are :meth:`Guards.check`, which the
path in front of Flask (:mod:`api.fast_path`: a status lookup's, a submission's) runs too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from flask import Flask, Request, Response, request
from werkzeug.local import LocalProxy
from werkzeug.routing import Rule

from api import auth, bodies, hosts, metrics, origin
from nectar.auth import TokenChecker
from nectar.config import Settings
from nectar.sessions import SessionSigner


class Asked(Protocol):
    """What the checks (and :func:`api.metrics.record`) read of a request: its WSGI environ (its headers are read
    there, as werkzeug reads them), method and route. Flask's request is one; the path in front of Flask hands them
    a lighter one (:class:`api.fast_path.Asked`), which makes no request object when nothing needs one."""

    @property
    def environ(self) -> dict[str, Any]: ...

    @property
    def method(self) -> str: ...

    @property
    def url_rule(self) -> Rule | None: ...

    @property
    def endpoint(self) -> str | None: ...


class Guards:
    """What every request passes before its view, in order; the first to refuse ends it."""

    def __init__(
        self,
        allowed: hosts.HostAllowList,
        checker: TokenChecker,
        sessions: SessionSigner,
        public_url: str | None,
        config: Mapping[str, Any],
    ) -> None:
        self.allowed = allowed
        self.checker = checker
        self.sessions = sessions
        self.public_url = public_url
        self.config = config

    def check(self, current: Asked) -> tuple[str, int] | Response | None:
        """None when ``current`` may reach its view; the web UI's page asking for a token when it may not; else
        the refusal raised (an HTTP error, or :class:`~nectar.auth.Unauthenticated`)."""
        metrics.start(current)  # first: every answer is timed, refusals included
        hosts.refuse_foreign_host(current, self.allowed)  # a foreign Host learns nothing, not even "401"
        origin.refuse_cross_site_write(current, self.allowed, self.public_url)
        if self.checker.enabled:
            page = auth.authorize(current, self.checker, self.sessions)
            if page is not None:
                return page
        # after the token: a body is read only for a client that may send it
        bodies.read_whole_chunked_body(current, self.config["MAX_CONTENT_LENGTH"])
        return None


def install(app: Flask, settings: Settings, checker: TokenChecker, sessions: SessionSigner) -> Guards:
    """Check every request before its view and time its answer after (see the module); the checks, for
    :mod:`api.fast_path`."""
    metrics.install(app)
    allowed = hosts.install(app, settings)
    auth.install(app, checker, sessions)
    guards = Guards(allowed, checker, sessions, settings.public_url, app.config)
    # Flask types ``request`` as the request it stands for; it is werkzeug's proxy of it (its method read once, here)
    current = cast("LocalProxy[Request]", request)._get_current_object

    @app.before_request
    def checked() -> tuple[str, int] | Response | None:
        return guards.check(current())

    @app.after_request
    def timed(response: Response) -> Response:
        return metrics.observe(current(), response)

    return guards
