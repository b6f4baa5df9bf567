"""Requests answered in front of Flask's dispatch when their answer is a success, every other case by Flask.

The hottest requests (a status poll, a submission) do less work of their own than Flask's machinery around them
(its request context: a URL adapter, routing, a session; ``before_request``/``after_request`` lookups, the view's
dispatch). Here a :class:`Route` (one view: :mod:`api.status_path`, :mod:`api.submit_path`) names the paths of its
method it answers; the request is an :class:`Asked` (its environ, method and the view's rule and path values: Flask's
request object is made from it only for a route that reads one), in the app's context when its route reads it
(``Route.app_context``); its links are built for its environ, their logs looked up in the app's service
(:func:`api.links.answering`, until :func:`api.links.answered`). It passes the same checks,
:meth:`api.guards.Guards.check`, which read the environ; its body is the envelope the view writes
(:func:`api.envelope.compact_envelope`), sent with the headers of the view's answer (without a response object:
building one and its WSGI headers cost as much as the JSON), and its latency is recorded by
:func:`api.metrics.record`. Anything else (another method or path, a request with a body, a refusal, a route that
declines or raises, an app whose JSON is not the compact kind) is handed
to Flask untouched, which answers it as it answers every request: errors have one home.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule

from api import links, metrics
from api.context import FACADE
from api.envelope import compact_envelope, compact_provider
from api.guards import Guards

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: a view's answer: its envelope's data, HTTP status and message (as :func:`api.envelope.dumped_answer` takes them)
Answer = tuple[object, int, str]
#: the type of the JSON, as a Flask response of it has it (the tests of the routes hold it to Flask's own)
JSON = "application/json"
CONTENT_TYPE = ("Content-Type", JSON)


class Route(Protocol):
    """One view answered in front of Flask: its method, its rule, the paths of it, and its successful answer.

    A route may say ``in_order = True``: every object of its answers' data has its keys in sorted order already, so
    the sorted dump the view's answer is gets written without sorting them again (:func:`api.envelope.compact_envelope`;
    without it, False); and ``app_context = False``: its answer reads nothing of the app's context (``current_app``,
    ``g``), which is then not pushed (~2 us; without it, True. Were something to read it, the RuntimeError would
    hand the request to Flask); and ``write(provider, data, status, message, in_order)``: what writes its body,
    :func:`api.envelope.compact_envelope`'s bytes (without it, ``compact_envelope`` itself)."""

    method: str
    rule: Rule

    def match(self, path: str) -> dict[str, str] | None:
        """The rule's values if Flask's routing sends ``method`` ``path`` to the view (None: any other path)."""

    def answer(self, asked: Asked, values: dict[str, str]) -> Answer | None:
        """The view's answer to ``asked``, or None (or a raise, before any write): Flask answers it."""


class Asked:
    """A request answered in front of Flask, as the checks read it (:class:`api.guards.Asked`: its environ, method
    and route); Flask's request object of it (:meth:`request`) is made only when a route reads one."""

    __slots__ = ("app", "environ", "method", "url_rule", "endpoint", "view_args", "_request")

    def __init__(self, app: Flask, environ: dict[str, Any], rule: Rule, values: dict[str, str]) -> None:
        self.app = app
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]  # as werkzeug has it (the path's routes are by method)
        self.url_rule: Rule | None = rule
        self.endpoint: str | None = rule.endpoint
        self.view_args = values
        self._request: Request | None = None

    def request(self) -> Request:
        """The app's request object of this environ, with the view's rule and path values (made once)."""
        made = self._request
        if made is None:
            made = self._request = self.app.request_class(self.environ)
            made.url_rule, made.view_args = self.url_rule, self.view_args  # where Flask's routing sends it
        return made


def status_line(status: int) -> str:
    """The status line werkzeug writes for ``status`` (``202 ACCEPTED``)."""
    return f"{status} {HTTP_STATUS_CODES[status].upper()}"


class FastPath:
    """A WSGI app answering its routes' successes itself and handing everything else to ``app``'s own."""

    def __init__(self, app: Flask, guards: Guards, flask_wsgi: WSGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        self.guards = guards
        self.flask_wsgi = flask_wsgi
        self.routes: dict[str, list[Route]] = {}
        for route in routes:
            self.routes.setdefault(route.method, []).append(route)
        self.status_lines: dict[int, str] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        routes = self.routes.get(environ.get("REQUEST_METHOD", ""))
        if routes is not None and not has_body(environ):
            path = environ.get("PATH_INFO", "")
            for route in routes:
                values = route.match(path)
                if values is not None:
                    answered = self.answer(route, values, environ)
                    if answered is not None:
                        status, body = answered
                        start_response(self.status_line(status), [CONTENT_TYPE, ("Content-Length", str(len(body)))])
                        return [body]
                    break
        return self.flask_wsgi(environ, start_response)

    def status_line(self, status: int) -> str:
        line = self.status_lines.get(status)
        if line is None:
            line = self.status_lines[status] = status_line(status)
        return line

    def answer(self, route: Route, values: dict[str, str], environ: dict[str, Any]) -> tuple[int, bytes] | None:
        """The status and body of ``route``'s answer to ``environ``, or None: Flask answers it (and what it cost is
        repeated). Its headers are those a Flask response of its JSON has (:data:`CONTENT_TYPE` and its length): the
        response object itself, and the WSGI headers it builds, are not made."""
        app = self.app
        provider = compact_provider(app)
        if provider is None or provider.mimetype != JSON:  # (debug) the view answers it
            return None
        asked = Asked(app, environ, route.rule, values)  # where Flask's routing sends it (Route.match)
        if getattr(route, "app_context", True):
            with app.app_context():
                return self.answered(route, asked, provider)
        return self.answered(route, asked, provider)

    def answered(self, route: Route, asked: Asked, provider: DefaultJSONProvider) -> tuple[int, bytes] | None:
        """:meth:`answer`'s, in the app's context if the route reads it."""
        environ = asked.environ
        answered: Answer | None = None
        text: str | None = None
        token = links.answering(environ, self.guards.public_url, self.app.extensions[FACADE])
        try:
            if self.guards.check(asked) is not None:
                return None
            answered = route.answer(asked, asked.view_args)
            if answered is not None:
                in_order = getattr(route, "in_order", False)
                text = getattr(route, "write", compact_envelope)(provider, *answered, in_order=in_order)
        except Exception:  # a refusal or an error: Flask answers it, through its one error handler
            answered = None
        finally:
            links.answered(token)
        if answered is None or text is None:
            environ.pop(metrics.STARTED, None)
            return None
        metrics.record(asked, answered[1])
        return answered[1], text.encode()


def has_body(environ: dict[str, Any]) -> bool:
    """Whether a request carries a body: its checks would read it (:mod:`api.bodies`), and a refusal of it here
    would leave Flask a body already read, so Flask answers it."""
    return "HTTP_TRANSFER_ENCODING" in environ or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def install(app: Flask, guards: Guards, routes: Sequence[Route]) -> None:
    """Answer ``routes``' successes in front of ``app``'s dispatch (see the module)."""
    app.wsgi_app = FastPath(app, guards, app.wsgi_app, routes)  # type: ignore[method-assign]
