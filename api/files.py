"""Downloads of local targets through signed, expiring URLs (the local store's presigned URLs)."""

from __future__ import annotations

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import nectar, signer
from api.envelope import error_responses
from nectar.errors import NotFound
from nectar.keys import TargetKey
from nectar.stores import BINARY, SERVED_TYPES, LocalStore, get_store, served_type

blp = Blueprint("files", __name__, url_prefix="/api", description="Signed downloads of local targets.")


class SignedFileQuerySchema(ma.Schema):
    key = ma.fields.String(required=True, metadata={"description": "The target key."})
    expires = ma.fields.String(required=True, metadata={"description": "Unix time the URL expires at."})
    signature = ma.fields.String(required=True, metadata={"description": "Hex HMAC-SHA256 of key and expiry."})


#: what a file is served as is :func:`nectar.stores.served_type`'s rule, the one S3 uploads follow too
ALL_TYPES = (*SERVED_TYPES, BINARY)
_FILE = {"type": "string", "format": "binary"}


@blp.route("/files")
class File(MethodView):
    @blp.arguments(SignedFileQuerySchema, location="query")
    @blp.response(200, _FILE, content_type=BINARY)
    @blp.doc(responses={"200": {"description": "The file", "content": {k: {"schema": _FILE} for k in ALL_TYPES}}})
    @error_responses(blp, 400, 403, 404, 422, protected=False)
    def get(self, args):
        """Stream a local target, given the signed URL a status answered

        Text, CSV and JSON files are served as such; any other file as bytes.
        """
        key = TargetKey.parse(args["key"])
        signer().verify(key.path, args["expires"], args["signature"])
        store = get_store(nectar().settings, "local")
        assert isinstance(store, LocalStore)
        path = store.path(key)  # resolved once: refuses a key leading out of the store
        if not path.is_file():
            raise NotFound(f"no file {key.path} in the local store")
        answer = Response(store.iter_bytes(key), mimetype=served_type(key.filename))
        answer.content_length = path.stat().st_size  # so a client can tell a cut-off download
        answer.headers["X-Content-Type-Options"] = "nosniff"
        return answer
