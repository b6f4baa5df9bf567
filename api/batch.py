"""Batch submission: many parameter sets of one task in one request, a JSON list or a CSV file."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.context import facade
from api.envelope import answer, error_responses
from api.schemas import BatchEnvelope, BatchQuerySchema
from api.submission import check_limits, json_body, submission_out
from nectar.catalog.model import TaskInfo
from nectar.config import Settings
from nectar.errors import InvalidParameters, QueueFull, TooLarge

blp = Blueprint("batch", __name__, url_prefix="/api/chains", description="Submitting many parameter sets at once.")

#: what each HTTP status of a row is counted as
OUTCOMES = {202: "queued", 200: "done", 413: "invalid", 422: "invalid", 503: "unavailable"}
_ROWS_SCHEMA = {"type": "array", "items": {"type": "object", "additionalProperties": True}}
_CSV_SCHEMA = {"type": "string", "description": "A header of parameter names, then one parameter set a line."}
BATCH_DOC = {
    "description": "The rows are a JSON list of parameter objects, a CSV body (`Content-Type: text/csv`) or a CSV "
    "file uploaded as the `file` field of a form; in a CSV, an empty cell leaves its parameter at its default. "
    "Each row is answered on its own, numbered from 1, with the status a single submission would get "
    "(202 queued or already active, 200 done, 422 invalid, 503 queue full). With `atomic=true` every row is "
    "validated first and, if any is invalid, nothing is queued: 422 with errors named `<row>.<parameter>`. "
    "Sending the same rows again queues nothing new: each row answers its active run or its done output.",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _ROWS_SCHEMA},
            "text/csv": {"schema": _CSV_SCHEMA},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    },
}


def _csv_rows(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        if not reader.fieldnames:
            raise InvalidParameters({"_body": ["the CSV has no header line of parameter names"]})
        for line in reader:
            if None in line:  # more cells than the header has names
                raise InvalidParameters({"_body": [f"line {reader.line_num} has more cells than the header"]})
            rows.append({name: value for name, value in line.items() if value not in (None, "")})
    except csv.Error as exc:  # e.g. a cell beyond the csv module's field size limit
        raise InvalidParameters({"_body": [f"not a CSV the service can read: {exc}"]}) from None
    return rows


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidParameters({"_body": ["the CSV is not UTF-8 text"]}) from None


def batch_rows() -> list[dict[str, Any]]:
    """The parameter sets of the request: a JSON list of objects, a CSV body or an uploaded CSV file."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidParameters({"file": ["upload the CSV as the form's 'file' field"]})
        rows = _csv_rows(_decode(upload.read()))
    elif mimetype == "text/csv":
        rows = _csv_rows(_decode(request.get_data()))
    else:
        body = json_body()
        if not isinstance(body, list) or not all(isinstance(row, dict) for row in body):
            raise InvalidParameters({"_body": ["the body must be a JSON list of parameter objects, or a CSV"]})
        rows = body
    if not rows:
        raise InvalidParameters({"_body": ["no rows: send at least one parameter set"]})
    limit = facade().settings.max_batch
    if len(rows) > limit:
        raise TooLarge(f"{len(rows)} rows sent; at most {limit} are accepted in one batch")
    return rows


def _parse(info: TaskInfo, values: dict[str, Any], settings: Settings) -> Any:
    """The task instance of one row (raises InvalidParameters or TooLarge naming the fields)."""
    check_limits(values, settings)
    return info.instantiate(values)


def _refused(number: int, status: int, message: str, errors: dict | None = None) -> dict[str, Any]:
    return {"row": number, "status": status, "message": message, "errors": errors}


def _refuse_all(invalid: list[dict[str, Any]]) -> None:
    """All or nothing: raise for every invalid row's fields, named ``<row>.<parameter>``, if there is any."""
    errors: dict[str, list[str]] = {}
    for row in invalid:
        fields = row["errors"] or {"": [row["message"]]}
        errors.update({f"{row['row']}.{name}".rstrip("."): list(messages) for name, messages in fields.items()})
    if errors:
        raise InvalidParameters(errors)


def submit_rows(info: TaskInfo, rows: list[dict[str, Any]], atomic: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Each row parsed and submitted on its own (``atomic``: none unless every row is valid): the answer's data,
    one answer per row and the counts, and its headers (``Retry-After`` when the queue refused a row)."""
    service = facade()
    parsed: list[Any] = []
    for number, values in enumerate(rows, start=1):
        try:
            parsed.append(_parse(info, values, service.settings))
        except (InvalidParameters, TooLarge) as exc:
            errors = getattr(exc, "errors", None)
            parsed.append(_refused(number, 413 if isinstance(exc, TooLarge) else 422, str(exc), errors))
    if atomic:
        _refuse_all([row for row in parsed if isinstance(row, dict)])
    results = []
    for number, instance in enumerate(parsed, start=1):
        if isinstance(instance, dict):
            results.append(instance)
            continue
        try:
            data, status, message = submission_out(service.submit_task(info, instance), service.settings)
        except QueueFull as exc:
            results.append(_refused(number, 503, str(exc)))
            continue
        results.append({**data, "row": number, "status": status, "message": message, "errors": None})
    counts = Counter(OUTCOMES[row["status"]] for row in results)
    headers = {}
    if counts["unavailable"]:
        headers["Retry-After"] = str(service.settings.retry_after)
    summary = {name: counts[name] for name in ("queued", "done", "invalid", "unavailable")}
    return {"rows": results, "counts": summary}, headers


@blp.route("/<chain_type>/<chain>/<task>/batch")
class Batch(MethodView):
    @blp.arguments(BatchQuerySchema, location="query")
    @blp.response(200, BatchEnvelope, description="Every row answered on its own.")
    @error_responses(blp, 404, 413, 422)
    @blp.doc(**BATCH_DOC)
    def post(self, query, chain_type, chain, task):
        """Run a task for each of many parameter sets"""
        info = facade().task(chain_type, chain, task)
        data, headers = submit_rows(info, batch_rows(), query["atomic"])
        return (*answer(data), headers)
