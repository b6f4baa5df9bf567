"""Downloads of local files through signed, expiring URLs: the local store's targets (by key), and the
outputs plain luigi tasks wrote under a folder the settings allow (by absolute path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import facade, signer
from api.envelope import error_responses
from nectar.errors import NotFound
from nectar.keys import TargetKey
from nectar.outputs import SIGNED_PATH_PREFIX, served_file
from nectar.stores import get_store
from nectar.stores.base import BINARY, SERVED_TYPES, served_type
from nectar.stores.local import LocalStore

blp = Blueprint("files", __name__, url_prefix="/api", description="Signed downloads of local targets.")


class SignedFileQuerySchema(ma.Schema):
    key = ma.fields.String(metadata={"description": "The target key (a file of the local store)."})
    path = ma.fields.String(metadata={"description": "The absolute path of a task's output (instead of key)."})
    expires = ma.fields.String(required=True, metadata={"description": "Unix time the URL expires at."})
    signature = ma.fields.String(
        required=True, metadata={"description": "Hex HMAC-SHA256 of key (or 'file:' and path) and expiry."}
    )

    @ma.validates_schema
    def one_of_key_or_path(self, data: dict, **_: object) -> None:
        if ("key" in data) == ("path" in data):
            raise ma.ValidationError("give either key or path, not both", "key" if "key" in data else "_schema")


#: what a file is served as is :func:`nectar.stores.base.served_type`'s rule, the one S3 uploads follow too
ALL_TYPES = (*SERVED_TYPES, BINARY)
_FILE = {"type": "string", "format": "binary"}


def _chunks(path: Path, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _located(args: dict) -> tuple[Path, str, Iterator[bytes]]:
    """The file a verified signed URL names, its name and bytes; 404 (or 400) if it is not there."""
    if "path" in args:
        signer().verify(SIGNED_PATH_PREFIX + args["path"], args["expires"], args["signature"])
        path = served_file(args["path"], facade().settings)  # checked again: a link may have changed since
        return path, path.name, _chunks(path)
    key = TargetKey.parse(args["key"])
    signer().verify(key.path, args["expires"], args["signature"])
    store = get_store(facade().settings, "local")
    assert isinstance(store, LocalStore)
    path = store.path(key)  # resolved once: refuses a key leading out of the store
    if not path.is_file():
        raise NotFound(f"no file {key.path} in the local store")
    return path, key.filename, store.iter_bytes(key)


@blp.route("/files")
class File(MethodView):
    @blp.arguments(SignedFileQuerySchema, location="query")
    @blp.response(200, _FILE, content_type=BINARY)
    @blp.doc(responses={"200": {"description": "The file", "content": {k: {"schema": _FILE} for k in ALL_TYPES}}})
    @error_responses(blp, 400, 403, 404, 422, protected=False)
    def get(self, args):
        """Stream a local file, given the signed URL a status answered

        Text, CSV and JSON files are served as such; any other file as bytes.
        """
        path, name, chunks = _located(args)
        answer = Response(chunks, mimetype=served_type(name))
        answer.content_length = path.stat().st_size  # so a client can tell a cut-off download
        answer.headers["X-Content-Type-Options"] = "nosniff"
        return answer
