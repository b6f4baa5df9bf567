"""API tokens: 401 without a valid token, 403 for a read token that writes, open health and downloads;
tokens configured as hashes only and never echoed back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app import create_app
from nectar.auth import InvalidTokenConfig, digest
from nectar.config import Settings

HELLO = "/api/chains/testchains/hello_luigiworld_chain/TestS3Task"
WRITER, READER = "writer-token-0123456789", "reader-token-0123456789"


def entry(token: str, scope: str, name: str) -> str:
    return f"{digest(token).hex()}:{scope}:{name}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secured(settings: Settings, client_for: Callable[[Settings], FlaskClient], tmp_path: Path) -> FlaskClient:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# the dashboard reads only\n{entry(READER, 'read', 'dashboard')}\n")
    return client_for(settings.replace(api_tokens=entry(WRITER, "write", "ci"), api_tokens_file=tokens_file))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/chains"),
        ("post", HELLO),
        ("get", "/api/runs/x"),
        ("post", "/api/runs/x/cancel"),
        ("get", "/metrics"),
        ("post", f"{HELLO}/batch"),
    ],
)
@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({}, "a bearer token is required"),
        ({"Authorization": "Basic d3JpdGVyOg=="}, "a bearer token is required"),
        ({"Authorization": "Bearer "}, "a bearer token is required"),
        (bearer("not-a-configured-token"), "the bearer token is not valid"),
        (bearer(digest(WRITER).hex()), "the bearer token is not valid"),  # the hash is not the token
    ],
)
def test_no_valid_token_is_401_with_a_challenge(
    secured: FlaskClient, method: str, path: str, headers: dict[str, str], says: str
) -> None:
    answer = getattr(secured, method)(path, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="datanectar"'
    assert says in answer.get_json()["message"]


def test_a_read_token_reads_but_writing_is_403_naming_it(secured: FlaskClient) -> None:
    assert secured.get("/api/chains", headers=bearer(READER)).status_code == 200
    refused = secured.post(HELLO, headers=bearer(READER))
    assert refused.status_code == 403
    assert refused.get_json()["message"] == "token 'dashboard' may only read; this request needs a write token"


def test_a_write_token_writes_and_reads(secured: FlaskClient) -> None:
    queued = secured.post(HELLO, headers=bearer(WRITER))
    assert queued.status_code == 202
    status = secured.get(queued.get_json()["data"]["status_url"], headers=bearer(WRITER))
    assert status.status_code == 200 and status.get_json()["data"]["job_status"] == "PENDING"


def test_health_docs_and_signed_downloads_stay_open(secured: FlaskClient) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/api/openapi.json").status_code == 200
    assert secured.get("/api/docs").status_code == 200
    assert secured.get("/api/docs/static/swagger-ui-bundle.js").status_code == 200
    # a download URL is authorised by its own signature: a bad one is 403 for that, not 401
    query = {"key": f"chains/a/b/C/{'0' * 32}/out.txt", "expires": "99999999999", "signature": "00"}
    answer = secured.get("/api/files", query_string=query)
    assert answer.status_code == 403 and "signature" in answer.get_json()["message"]


def test_reads_can_be_left_open(settings: Settings, client_for: Callable[[Settings], FlaskClient]) -> None:
    client = client_for(settings.replace(api_tokens=entry(WRITER, "write", "ci"), auth_reads=False))
    assert client.get("/api/chains").status_code == 200
    assert client.post(HELLO).status_code == 401
    assert client.post(HELLO, headers=bearer(WRITER)).status_code == 202


def test_no_token_configured_means_no_authentication(client: FlaskClient) -> None:
    assert client.post(HELLO).status_code == 202


@pytest.mark.parametrize(
    "bad", ["plain-token-in-clear", f"{'a' * 64}:admin", f"{'A' * 64}:read", f"{'a' * 63}:read", "sha256:abc:read"]
)
def test_a_token_configuration_that_is_not_hashes_stops_the_app_without_echoing_it(
    settings: Settings, bad: str
) -> None:
    with pytest.raises(InvalidTokenConfig) as raised:
        create_app({"NECTAR_SETTINGS": settings.replace(api_tokens=bad)})
    assert bad not in str(raised.value) and "configure hashes, not tokens" in str(raised.value)


def test_tokens_never_appear_in_answers_or_params(settings: Settings, secured: FlaskClient) -> None:
    queued = secured.post(HELLO, headers=bearer(WRITER)).get_json()["data"]
    bodies = [
        secured.get(queued["status_url"], headers=bearer(WRITER)).get_data(as_text=True),
        secured.get(f"/api/runs/{queued['run_id']}", headers=bearer(WRITER)).get_data(as_text=True),
        secured.get("/api/chains", headers=bearer("wrong-token")).get_data(as_text=True),
        secured.get("/healthz").get_data(as_text=True),
    ]
    for body in bodies:
        assert WRITER not in body and "wrong-token" not in body and digest(WRITER).hex() not in body


def test_pages_ask_for_a_token_and_take_it_from_the_session_but_writes_never_do(secured: FlaskClient) -> None:
    asked = secured.get("/ui/runs")
    assert asked.status_code == 401 and asked.mimetype == "text/html"
    page = asked.get_data(as_text=True)
    assert "API token needed" in page and 'id="api-token"' in page and "data-needs-token" in page
    assert secured.get("/ui/static/nectar.js").status_code == 200  # the page's own script and style stay open

    assert secured.post("/ui/session", headers=bearer(READER)).status_code == 204  # the token field's session
    assert secured.get("/ui/runs").status_code == 200
    assert secured.get("/").status_code == 200
    # the session is for opening pages: the API itself, and every write, still want the header
    assert secured.get("/api/chains").status_code == 401
    assert secured.post("/ui/session", headers=bearer(WRITER)).status_code == 204
    assert secured.post(HELLO).status_code == 401
    secured.set_cookie("nectar_session", "not-a-session")
    assert secured.get("/ui/runs").status_code == 401


def test_health_is_open_but_its_details_need_a_read_token(secured: FlaskClient, settings: Settings) -> None:
    """A load balancer gets the verdict; what the checks found (paths, hosts, errors) needs a token."""
    anonymous = secured.get("/healthz")
    assert anonymous.status_code == 200 and anonymous.get_json()["message"] == "ok"
    assert str(settings.data_dir) not in anonymous.get_data(as_text=True)
    assert {name: check["ok"] for name, check in anonymous.get_json()["data"].items()} == {
        "registry": True,
        "store": True,
    }
    with_token = secured.get("/healthz", headers=bearer(READER)).get_json()["data"]
    assert str(settings.data_dir) in with_token["registry"]["detail"]
