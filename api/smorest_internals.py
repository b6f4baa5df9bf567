"""The one module that touches flask-smorest's private names; the rest of ``api/`` calls it.

flask-smorest is pinned to the minor version tested (``pyproject.toml``), and
``tests/api/test_smorest_internals.py`` fails loudly, naming the name, when a release changes one of them:

- ``Api._register_error_handlers`` and ``Api._app``: which exceptions reach the one handler
  (:class:`OneHandlerApi`);
- a view's ``_apidoc``, the documentation flask-smorest's decorators leave on it (:func:`documented_only`);
- ``Blueprint.add_url_rule``, flask-smorest's override of flask's that documents a route
  (:func:`add_undocumented_url_rule` routes past it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import flask
import flask_smorest
from werkzeug.exceptions import HTTPException


class OneHandlerApi(flask_smorest.Api):
    """flask-smorest's ``Api`` whose one error handler, ``handle_http_exception``, also answers the exceptions
    of ``HANDLED_ERRORS`` (as it answers ``HTTPException``)."""

    HANDLED_ERRORS: tuple[type[Exception], ...] = ()

    def _register_error_handlers(self) -> None:
        for error in (HTTPException, *self.HANDLED_ERRORS):
            self._app.register_error_handler(error, self.handle_http_exception)


def documented_only(view: Callable[..., Any], decorators: Iterable[Callable[[Callable], Callable]]) -> Callable:
    """``view`` itself, documented in the OpenAPI document as ``decorators`` (flask-smorest's, outermost first)
    would document it: none of their wrappers is left to run around every call."""
    documented = view
    for documenting in reversed(list(decorators)):
        documented = documenting(documented)
    view._apidoc = documented._apidoc  # type: ignore[attr-defined]
    return view


def add_undocumented_url_rule(
    blp: flask_smorest.Blueprint, rule: str, view: Callable[..., Any], endpoint: str | None = None, **options: Any
) -> None:
    """Route ``rule`` to ``view`` on ``blp`` (``endpoint``: the view's name unless given; ``options``: the rule's,
    ``methods=...``), kept out of the OpenAPI document: flask's own ``add_url_rule``, which flask-smorest's
    override calls before it records the route's documentation."""
    flask.Blueprint.add_url_rule(blp, rule, endpoint or view.__name__, view, **options)
