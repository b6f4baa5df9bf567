"""The answer envelope ``{"data", "message", "status"}``: its schemas and the helpers views use."""

from __future__ import annotations

import http

import marshmallow as ma
from flask_smorest import Blueprint


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


#: what a protected endpoint may answer when tokens are configured (see api/auth.py)
AUTH_ERRORS = (401, 403)


def error_responses(blp: Blueprint, *codes: int, protected: bool = True):
    """Document the error answers (the error envelope) an endpoint can give, the token ones included."""

    def decorator(func):
        for code in sorted(set(codes) | set(AUTH_ERRORS if protected else ())):
            func = blp.alt_response(code, response=http.HTTPStatus(code).name)(func)
        return func

    return decorator
