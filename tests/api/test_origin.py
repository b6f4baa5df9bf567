"""A browser's write from a page of another site is refused; same-site pages and non-browser clients write."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

HELLO = "/api/chains/testchains/hello_luigiworld_chain/TestS3Task"


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["other-origin", "opaque-origin", "fetch-metadata"],
)
def test_a_cross_site_write_is_403(client: FlaskClient, headers: dict[str, str]) -> None:
    answer = client.post(HELLO, headers=headers)
    assert answer.status_code == 403 and "another site" in answer.get_json()["message"]
    assert client.post(f"{HELLO}/batch", json=[{}], headers=headers).status_code == 403


def test_a_cross_site_read_is_still_answered(client: FlaskClient) -> None:
    assert client.get("/api/chains", headers={"Origin": "https://evil.example"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Host": "localhost:80", "Origin": "http://localhost"},
    ],
    ids=["curl", "same-origin", "fetch-metadata-same-origin", "same-origin-host-with-default-port"],
)
def test_same_site_and_plain_clients_write(client: FlaskClient, headers: dict[str, str]) -> None:
    """The Origin is held to the request's host as werkzeug reads it (``request.host``: a Host's default port left
    out, as a browser leaves it out of the Origin)."""
    assert client.post(HELLO, headers=headers).status_code == 202
