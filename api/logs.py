"""A task's stdout or stderr, live while it runs and from the store once it ended."""

from __future__ import annotations

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import facade
from api.envelope import error_responses
from api.schemas import KeyQuerySchema
from nectar.keys import TargetKey
from nectar.logs.files import STREAMS, open_log

blp = Blueprint("logs", __name__, url_prefix="/api", description="Task logs.")


class LogQuerySchema(KeyQuerySchema):
    stream = ma.fields.String(load_default="stdout", validate=ma.validate.OneOf(STREAMS))


@blp.route("/logs")
class Log(MethodView):
    @blp.arguments(LogQuerySchema, location="query")
    @blp.response(200, {"type": "string"}, content_type="text/plain")
    @error_responses(blp, 400, 404, 422, 503)
    def get(self, args):
        """The task's stdout or stderr as plain text"""
        key = TargetKey.parse(args["chain"])
        chunks = open_log(key, args["stream"], facade().store_of(key))
        return Response(chunks, mimetype="text/plain")
