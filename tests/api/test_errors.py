"""The one error handler: a 422 of webargs (a query argument or a body field the endpoint's schema refuses) names
each bad field and what was wrong in its ``message``, as a task's bad parameters do, its ``errors`` kept per field.
Before, every such 422 said "Unprocessable Entity: The request was well-formed but was unable to be followed due to
semantic errors.", the field named only in ``errors``."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from nectar.errors import InvalidParameters, invalid_fields


@pytest.mark.parametrize(
    ("url", "errors"),
    [
        ("/api/chainstatus", {"chain": ["Missing data for required field."]}),
        ("/api/logs", {"chain": ["Missing data for required field."]}),
        ("/api/runs?since=soon", {"since": ["Not a valid number."]}),
        ("/api/runs?state=DONE", {"state": ["renamed job_status, the name statuses use"]}),
        (
            "/api/runs?since=soon&until=later",
            {"since": ["Not a valid number."], "until": ["Not a valid number."]},
        ),
    ],
)
def test_a_query_argument_refused_by_its_schema_is_named_in_the_message(
    client: FlaskClient, url: str, errors: dict[str, list[str]]
) -> None:
    answer = client.get(url)

    assert answer.status_code == 422
    body = answer.get_json()
    assert body["errors"] == errors
    detail = "; ".join(f"{field}: {', '.join(said)}" for field, said in sorted(errors.items()))
    assert body["message"] == f"invalid parameters: {detail}"


def test_messages_nested_by_item_name_the_item() -> None:
    """marshmallow nests a list's messages by index, a dict's by key: each named down to it, in one line."""
    nested = {"tags": {1: ["Not a valid string."], 0: ["Not a valid string."]}, "day": ["Not a valid date."]}

    said = invalid_fields(nested)

    named = ["day: Not a valid date.", "tags.0: Not a valid string.", "tags.1: Not a valid string."]
    assert said == f"invalid parameters: {'; '.join(named)}"
    assert str(InvalidParameters({"b": ["x", "y"], "a": ["z"]})) == "invalid parameters: a: z; b: x, y"


def test_a_body_that_is_no_json_is_a_bad_request_not_invalid_parameters(client: FlaskClient) -> None:
    """webargs' 400 for a body it cannot parse says what was wrong under the status's name: no parameter was read, so
    none is invalid (before, "invalid parameters: json: Invalid JSON body." with a 400, the 422's words)."""
    answer = client.post("/api/batches", data="{not json", content_type="application/json")

    assert answer.status_code == 400
    body = answer.get_json()
    assert body["errors"] == {"json": ["Invalid JSON body."]}
    assert body["message"] == "Bad Request: json: Invalid JSON body."


def test_a_body_of_the_wrong_kind_is_named_as_the_body_not_marshmallows_schema_key(client: FlaskClient) -> None:
    """A JSON array where an object is expected: the message names the body (``json``), as the user sent it; before,
    marshmallow's own key for errors of no field, ``_schema``, which names nothing the user sent."""
    answer = client.post("/api/batches", json=[1, 2])

    assert answer.status_code == 422
    body = answer.get_json()
    assert body["errors"] == {"json": ["Invalid input type."]}
    assert body["message"] == "invalid parameters: json: Invalid input type."
