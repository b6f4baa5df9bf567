"""The one error handler: every HTTP or Nectar error becomes the envelope with its real status code."""

from __future__ import annotations

import http
from typing import Any

import marshmallow as ma

from api.smorest_internals import OneHandlerApi
from nectar.auth import Forbidden, Unauthenticated
from nectar.errors import (
    InvalidKey,
    InvalidParameters,
    InvalidSignature,
    InvalidTask,
    NectarError,
    NotFound,
    RunFinished,
    ScheduleConflict,
    TooLarge,
    Unavailable,
    invalid_fields,
)

#: Nectar exception -> HTTP status, most specific first
STATUS_OF: tuple[tuple[type[NectarError], int], ...] = (
    (NotFound, 404),
    (InvalidParameters, 422),
    (InvalidTask, 422),
    (InvalidKey, 400),
    (InvalidSignature, 403),
    (RunFinished, 409),
    (ScheduleConflict, 409),
    (TooLarge, 413),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (Unavailable, 503),
)


#: seconds a client should wait after a 503 that does not say otherwise
DEFAULT_RETRY_AFTER = 5


class ErrorEnvelopeSchema(ma.Schema):
    """The envelope of an error answer (documentation only)."""

    data = ma.fields.Raw(allow_none=True, metadata={"description": "Always null."})
    message = ma.fields.String(metadata={"description": "What went wrong."})
    status = ma.fields.Integer(metadata={"description": "The HTTP status code."})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Messages per field, when the input was invalid."},
    )


def _flatten(errors: dict) -> dict:
    """webargs nests messages under their location (``query``, ``json``); keep them per field, and those of no field
    (marshmallow's ``_schema``: a body of the wrong kind, a rule across fields) under the location's name, which is
    what the user sent."""
    flat: dict = {}
    for location, fields in errors.items():
        if isinstance(fields, dict) and location in {"query", "json", "form", "headers", "files", "view_args"}:
            flat.update({(location if field == "_schema" else field): said for field, said in fields.items()})
        else:
            flat[location] = fields
    return flat


def describe(error: NectarError) -> tuple[int, str, dict | None]:
    """HTTP status, message and per-field errors for a Nectar exception."""
    code = next((status for cls, status in STATUS_OF if isinstance(error, cls)), 500)
    if isinstance(error, Unavailable):
        return code, f"{error.service} unavailable: {error}", None
    if isinstance(error, InvalidParameters):
        return code, str(error), error.errors
    return code, str(error), None


class NectarApi(OneHandlerApi):
    """flask-smorest's Api whose single handler also maps :class:`NectarError` and keeps the envelope."""

    ERROR_SCHEMA = ErrorEnvelopeSchema
    HANDLED_ERRORS = (NectarError,)

    def handle_http_exception(self, error):
        headers: dict = {}
        errors = None
        if isinstance(error, NectarError):
            code, message, errors = describe(error)
            if isinstance(error, Unavailable):
                headers["Retry-After"] = str(error.retry_after or DEFAULT_RETRY_AFTER)
            if isinstance(error, Unauthenticated):
                headers["WWW-Authenticate"] = 'Bearer realm="datanectar"'

        else:
            code = error.code or 500
            message = f"{error.name}: {error.description}" if error.description else http.HTTPStatus(code).phrase
            data = getattr(error, "data", None) or {}
            errors = data.get("errors", data.get("messages"))
            headers = data.get("headers", {})
            if isinstance(errors, dict):
                errors = _flatten(errors)
                # each field named, as InvalidParameters names them: webargs' 422 as its parameters, its 400 (a body
                # it cannot parse) under the status's name
                message = invalid_fields(errors) if code == 422 else invalid_fields(errors, error.name)
            message = data.get("message", message)
        payload: dict[str, Any] = {"data": None, "message": message, "status": code}
        if errors:
            payload["errors"] = errors
        return payload, code, headers
