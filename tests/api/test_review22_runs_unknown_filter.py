"""review22 (on main): ``GET /api/runs`` with a filter it does not know answers ``200`` with every run, unfiltered.
README's table promises "`422` naming a bad filter", and ``RunsQuerySchema.renamed`` refuses the old name ``state``
for that very reason ("rather than every run unfiltered"), but webargs passes over every other unknown query argument
(its default for the query string): ``?status=FAILED`` (the envelope's own word) lists the PENDING runs too, and
``?limit=1`` (the page size is ``page_size``) lists every run of the page, so a script counting its failures, or
reading one run, reads them all."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient


@pytest.mark.parametrize("query", [{"status": "FAILED"}, {"limit": "1"}])
def test_a_filter_the_runs_listing_does_not_know_is_a_422_naming_it(client: FlaskClient, query: dict[str, str]) -> None:
    """Fails on main: 200, the run just queued (PENDING) listed."""
    for aparam in ("a", "b"):
        queued = client.post(
            "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask", query_string={"aparam": aparam}
        )
        assert queued.status_code == 202, queued.get_json()
    answer = client.get("/api/runs", query_string=query)
    body = answer.get_json()
    assert answer.status_code == 422, (answer.status_code, [run["job_status"] for run in body["data"] or []])
    (name,) = query
    assert name in body["errors"], body
