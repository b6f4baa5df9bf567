"""``GET /api/chainstatus`` answered in front of Flask's dispatch when its answer is a 200, every other case by Flask.

The status poll is the hottest request, and a lookup's own work is smaller than Flask's machinery around it
(its request context: a URL adapter, routing, a session; ``before_request``/``after_request`` lookups, the view's
dispatch). Here the request is Flask's request object with the view's rule (the one route its method and path
reach: ``PATHS``), in the app's context; its links are built for its environ (:func:`api.links.answering`). It
passes the same checks, :meth:`api.guards.Guards.check`; its body is built by the view's own functions
(:func:`api.status.status_data`, :func:`api.envelope.dumped_json`) and sent with the headers of the view's answer
(without a response object: building one and its WSGI headers cost as much as the JSON), and its latency is recorded
by :func:`api.metrics.record`. Anything else (another method or path, a request with a body, a refusal, a missing or
bad ``chain``, a key nothing knows, a store or registry that fails, an app whose JSON is not the compact kind) is
handed to Flask untouched, which answers it as it answers every request: errors have one home.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from api import links, metrics
from api.envelope import dumped_json
from api.guards import Guards
from api.status import status_data
from nectar.keys import TargetKey

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: the view's endpoint, and the paths that reach it (a trailing slash is the same URL: ``strict_slashes`` is off;
#: tests/api/test_status_path.py asks Flask's routing)
ENDPOINT = "status.ChainStatus"
PATHS = frozenset({"/api/chainstatus", "/api/chainstatus/"})
#: the 200's status line and the type of its JSON, as a Flask response of it has them (the test of this module
#: holds them to Flask's own)
OK, JSON = "200 OK", "application/json"
CONTENT_TYPE = ("Content-Type", JSON)


class StatusPath:
    """A WSGI app answering a status lookup's 200 itself and handing everything else to ``app``'s own."""

    def __init__(self, app: Flask, guards: Guards, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.guards = guards
        self.flask_wsgi = flask_wsgi
        (self.rule,) = app.url_map.iter_rules(ENDPOINT)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") in PATHS and not has_body(environ):
            body = self.answer(environ)
            if body is not None:
                start_response(OK, [CONTENT_TYPE, ("Content-Length", str(len(body)))])
                return [body]
        return self.flask_wsgi(environ, start_response)

    def answer(self, environ: dict[str, Any]) -> bytes | None:
        """The body of the 200 the lookup ``environ`` asks for, or None: Flask answers it (and what it costs is
        repeated). Its headers are those a Flask response of its JSON has (:data:`CONTENT_TYPE` and its length): the
        response object itself, and the WSGI headers it builds, are not made."""
        request = self.app.request_class(environ)
        request.url_rule, request.view_args = self.rule, {}  # where Flask's routing sends it (see PATHS)
        with self.app.app_context(), links.answering(environ):
            try:
                if self.guards.check(request) is not None:
                    return None
                chain = request.args.get("chain")
                if chain is None:
                    return None
                data = status_data(self.app.extensions["nectar"], TargetKey.parse(chain))
                text = dumped_json(self.app, data)
            except Exception:  # a refusal or an error: Flask answers it, through its one error handler
                environ.pop(metrics.STARTED, None)
                return None
            if text is None or getattr(self.app.json, "mimetype", None) != JSON:  # (debug) the view answers it
                environ.pop(metrics.STARTED, None)
                return None
            metrics.record(request, 200)
            return text.encode()


def has_body(environ: dict[str, Any]) -> bool:
    """Whether a request carries a body: its checks would read it (:mod:`api.bodies`), and a refusal of it here
    would leave Flask a body already read, so Flask answers it."""
    return "HTTP_TRANSFER_ENCODING" in environ or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def install(app: Flask, guards: Guards) -> None:
    """Answer status lookups in front of ``app``'s dispatch (see the module)."""
    app.wsgi_app = StatusPath(app, guards, app.wsgi_app)  # type: ignore[method-assign]
