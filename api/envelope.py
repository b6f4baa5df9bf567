"""The answer envelope ``{"data", "message", "status"}``: its schemas and the helpers views use."""

from __future__ import annotations

import functools
import http
import json
from collections.abc import Callable
from typing import Any, cast

import marshmallow as ma
from flask import Flask, Response, current_app, jsonify
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from werkzeug.local import LocalProxy

from api.smorest_internals import documented_only

#: the app of the current context, as ``current_app._get_current_object()`` gives it: Flask types ``current_app`` as the
#: app it stands for, and it is werkzeug's proxy of it (its method read once, here)
_current_app = cast("LocalProxy[Flask]", current_app)._get_current_object


def enveloped(name: str, data: ma.fields.Field) -> type[ma.Schema]:
    """A schema named ``name`` for an answer whose ``data`` is ``data``."""
    return ma.Schema.from_dict(
        {
            "data": data,
            "message": ma.fields.String(metadata={"description": "A word on the answer, 'success' if nothing else."}),
            "status": ma.fields.Integer(metadata={"description": "The HTTP status code, repeated."}),
        },
        name=name,
    )


def answer(data: object, status: int = 200, message: str = "success") -> tuple[dict, int]:
    """A view's return value: the envelope and the matching HTTP status."""
    return {"data": data, "message": message, "status": status}, status


def dumped_answer(data: object, status: int = 200, message: str = "success") -> Response:
    """:func:`answer` for ``data`` already shaped exactly as the view's response schema dumps it, sent as is.

    A ``Response`` is never dumped again (flask-smorest passes it through; under :func:`doc_only` the
    schema only documents it): a hot path saves marshmallow's walk over values that are JSON already.
    """
    app = _current_app()
    provider = compact_provider(app)
    if provider is None:  # indented in debug, or another provider's own: jsonify writes it
        response = jsonify({"data": data, "message": message, "status": status})
    else:  # what jsonify writes, by an encoder built once (json.dumps builds one per call: ~40 % of the encoding)
        response = app.response_class(compact_envelope(provider, data, status, message), mimetype=provider.mimetype)
    response.status_code = status
    return response


def compact_envelope(
    provider: DefaultJSONProvider, data: object, status: int, message: str, in_order: bool = False
) -> str:
    """The body :func:`dumped_answer` sends, what ``jsonify`` writes for the envelope (its JSON and a newline),
    written with ``provider``: an app's whose JSON is the compact kind (:func:`compact_provider`). ``in_order``: every
    object in ``data`` has its keys in sorted order already (as a status answer's, tests/api/test_status_order.py),
    so a sorted dump is written without sorting them again.

    Written without ``ensure_ascii``'s escaping first (~8 % of a status answer's encoding: the ASCII encoder sizes,
    then writes, each character with a test of its own), which changes no byte of a text whose characters are all
    below DEL (``~`` and before): the two encoders escape those alike, and only those, so such a text is the answer.
    Else (non-ASCII text, or a DEL, which ``ensure_ascii`` writes ``\\u007f``) it is written again, as asked."""
    body = {"data": data, "message": message, "status": status}
    sort_keys = provider.sort_keys and not in_order
    text: str = compact_encoder(provider.default, False, sort_keys).encode(body)
    if provider.ensure_ascii and not (text.isascii() and "\x7f" not in text):
        text = compact_encoder(provider.default, True, sort_keys).encode(body)
    return f"{text}\n"


def compact_provider(app: Flask) -> DefaultJSONProvider | None:
    """``app``'s JSON provider when it is Flask's own out of debug mode (the kind :func:`compact_envelope` writes), else
    None."""
    provider = app.json
    if type(provider) is DefaultJSONProvider and (
        provider.compact is True or (provider.compact is None and not app.debug)
    ):
        return provider
    return None


@functools.lru_cache(maxsize=8)
def compact_encoder(default: Callable[[Any], Any], ensure_ascii: bool, sort_keys: bool) -> json.JSONEncoder:
    """The encoder Flask's default JSON provider uses out of debug mode (``json.dumps``' arguments), kept, without
    its check for circular references: an answer is a tree of values made for it, and its check (the id of each
    object and array noted, then dropped, ~11k of a status answer's ~134k instructions) only chooses the error a
    cycle raises (ValueError; without it, RecursionError: a 500 alike), never a byte of an answer."""
    return json.JSONEncoder(
        default=default, ensure_ascii=ensure_ascii, sort_keys=sort_keys, separators=(",", ":"), check_circular=False
    )


#: what a protected endpoint may answer when tokens are configured (see api/auth.py)
AUTH_ERRORS = (401, 403)


def doc_only(*decorators: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """The OpenAPI documentation flask-smorest ``decorators`` give a view, without their wrappers.

    For decorators that only document (alternative responses), and for what a hot view does itself:
    none of their wrappers is left to run around every call.
    """
    return lambda view: documented_only(view, decorators)


def error_responses(blp: Blueprint, *codes: int, protected: bool = True):
    """Document the error answers (the error envelope) an endpoint can give, the token ones included.

    Documentation alone: the one error handler gives these answers, no wrapper per code runs.
    """
    codes = tuple(sorted(set(codes) | set(AUTH_ERRORS if protected else ())))
    return doc_only(*(blp.alt_response(code, response=http.HTTPStatus(code).name) for code in codes))
