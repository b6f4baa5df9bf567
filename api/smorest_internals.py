"""The one module that touches flask-smorest's private names; the rest of ``api/`` calls it.

flask-smorest is pinned to the minor version tested (``pyproject.toml``), and
``tests/api/test_smorest_internals.py`` fails loudly, naming the name, when a release changes one of them:

- ``Api._register_error_handlers`` and ``Api._app``: which exceptions reach the one handler
  (:class:`OneHandlerApi`);
- what ``Api.register_blueprint`` does (the app's ``flask-smorest`` extension's ``blp_name_to_api``, flask's
  ``register_blueprint``, then ``Blueprint.register_views_in_doc`` and a tag in ``Api.spec``), which
  :class:`DocumentedOnFirstReadApi` splits in two;
- a view's ``_apidoc``, the documentation flask-smorest's decorators leave on it (:func:`documented_only`);
- ``Blueprint.add_url_rule``, flask-smorest's override of flask's that documents a route
  (:func:`add_undocumented_url_rule` routes past it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import flask
import flask_smorest
from werkzeug.exceptions import HTTPException

#: where flask-smorest's decorators keep a view's documentation: an attribute they add to its function
_APIDOC = "_apidoc"


class DocumentedOnFirstReadApi(flask_smorest.Api):
    """flask-smorest's ``Api`` that writes a blueprint's views into the OpenAPI document (``spec``) when the document is
    first read (/api/openapi.json, ``flask openapi print``, any use of ``spec``), not when the blueprint is registered:
    its routes are served at once, and a start that serves no document does not build it (half of ``create_app``:
    marshmallow schemas converted to OpenAPI). Every reading of ``spec`` writes what is pending first, in the order
    the blueprints were registered, so the document is the one flask-smorest would have built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._undocumented: list[tuple[flask_smorest.Blueprint, str, Any]] = []
        self._documenting = threading.Lock()  # a worker's threads may read the document first at once
        super().__init__(*args, **kwargs)

    @property
    def spec(self) -> Any:
        if self._undocumented:
            with self._documenting:
                while self._undocumented:  # another thread may have written them meanwhile
                    blp, name, parameters = self._undocumented[0]
                    blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                    self._spec.tag({"name": name, "description": blp.description})
                    self._undocumented.pop(0)
        return self._spec

    @spec.setter
    def spec(self, spec: Any) -> None:
        self._spec = spec

    def register_blueprint(self, blp: flask_smorest.Blueprint, *, parameters: Any = None, **options: Any) -> None:
        """flask-smorest's, its documentation written when the document is first read."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))


class OneHandlerApi(DocumentedOnFirstReadApi):
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
    setattr(view, _APIDOC, getattr(documented, _APIDOC))
    return view


def add_undocumented_url_rule(
    blp: flask_smorest.Blueprint, rule: str, view: Callable[..., Any], endpoint: str | None = None, **options: Any
) -> None:
    """Route ``rule`` to ``view`` on ``blp`` (``endpoint``: the view's name unless given; ``options``: the rule's,
    ``methods=...``), kept out of the OpenAPI document: flask's own ``add_url_rule``, which flask-smorest's
    override calls before it records the route's documentation."""
    flask.Blueprint.add_url_rule(blp, rule, endpoint or view.__name__, view, **options)
