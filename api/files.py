"""Downloads of local targets through signed, expiring URLs (the local store's presigned URLs)."""

from __future__ import annotations

import mimetypes

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import nectar, signer
from api.envelope import error_responses
from nectar.errors import NotFound
from nectar.keys import TargetKey
from nectar.stores import get_store

blp = Blueprint("files", __name__, url_prefix="/api", description="Signed downloads of local targets.")


class SignedFileQuerySchema(ma.Schema):
    key = ma.fields.String(required=True, metadata={"description": "The target key."})
    expires = ma.fields.String(required=True, metadata={"description": "Unix time the URL expires at."})
    signature = ma.fields.String(required=True, metadata={"description": "Hex HMAC-SHA256 of key and expiry."})


@blp.route("/files")
class File(MethodView):
    @blp.arguments(SignedFileQuerySchema, location="query")
    @blp.response(200, {"type": "string", "format": "binary"}, content_type="application/octet-stream")
    @error_responses(blp, 400, 403, 404, 422, protected=False)
    def get(self, args):
        """Stream a local target, given the signed URL a status answered"""
        key = TargetKey.parse(args["key"])
        signer().verify(key.path, args["expires"], args["signature"])
        store = get_store(nectar().settings, "local")
        if not store.exists(key):
            raise NotFound(f"no file {key.path} in the local store")
        mimetype = mimetypes.guess_type(key.filename)[0] or "application/octet-stream"
        return Response(store.iter_bytes(key), mimetype=mimetype)
