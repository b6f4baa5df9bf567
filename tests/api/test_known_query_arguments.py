"""A query argument an endpoint does not take is a 422 naming it and the ones it takes (:class:`api.schemas.
KnownQuerySchema`): webargs passes over an unknown one, so a misspelled filter or option did as if it was not given.
review22's test shows ``/api/runs``; these are the other endpoints that read a query string's options."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient


@pytest.mark.parametrize(
    ("method", "url", "name", "takes"),
    [
        ("get", "/api/schedules?paused=true", "paused", "page, page_size"),
        ("get", "/api/triggers?state=paused", "state", "page, page_size"),
        ("get", "/api/schedules/nightly/fires?limt=5", "limt", "backfill, limit"),
        (
            "post",
            "/api/schedules/nightly/backfill?start=2024-01-01&end=2024-01-02&max_active=2",
            "max_active",
            "end, start",
        ),
        ("get", "/api/triggers/landing/objects?limt=5", "limt", "limit"),
        (
            "post",
            "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask/batch?atomc=true",
            "atomc",
            "atomic",
        ),
        ("post", "/api/batches?atomc=true", "atomc", "atomic"),
    ],
)
def test_an_option_the_endpoint_does_not_take_is_a_422_naming_it(
    client: FlaskClient, method: str, url: str, name: str, takes: str
) -> None:
    """Before: the option was passed over (a 404 for the unknown schedule or trigger, a 200 listing, a batch read as
    not atomic)."""
    answer = getattr(client, method)(url, json={})
    body = answer.get_json()
    assert answer.status_code == 422, (answer.status_code, body)
    assert body["errors"][name] == [f"not a query argument of this endpoint (it takes {takes})"], body


def test_the_pages_and_the_old_filter_name_are_still_told_apart(client: FlaskClient) -> None:
    assert client.get("/api/runs?page=1&page_size=5&job_status=DONE").status_code == 200
    assert client.get("/api/schedules?page=1&page_size=5").status_code == 200
    answer = client.get("/api/runs?state=DONE")
    assert (answer.status_code, answer.get_json()["errors"]) == (
        422,
        {"state": ["renamed job_status, the name statuses use"]},
    )
