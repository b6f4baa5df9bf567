"""A signed download URL lives no longer than the configured lifetime: a valid signature over an expiry
far in the future (``expires=999999999999``) is refused like any bad signature (issue 17, point 13)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.signing import CLOCK_SKEW, load_secret
from tests.api.conftest import build_app

KEY = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "b" * 32)


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return build_app(settings).test_client()


@pytest.fixture
def stored(settings: Settings) -> bytes:
    """A real file in the local store at KEY."""
    path = settings.local_targets_dir / KEY.path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"signed bytes\n")
    return b"signed bytes\n"


def signed_by_hand(settings: Settings, expires: int) -> dict[str, str]:
    """The query of a download URL signed here with the deployment's secret, not by the API's signer."""
    signature = hmac.new(load_secret(settings), f"{KEY.path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return {"key": KEY.path, "expires": str(expires), "signature": signature}


@pytest.mark.parametrize(
    "expiry",
    # each made as the test runs: made as the module was collected, an hour beyond the lifetime was within it once a
    # whole run (68 minutes under load) reached the test an hour later
    [lambda: 999999999999, lambda: int(time.time()) + Settings.url_expiry + CLOCK_SKEW + 3600],
    ids=["year-33658", "an-hour-beyond"],
)
def test_a_valid_signature_expiring_beyond_the_lifetime_is_403(
    client: FlaskClient, settings: Settings, stored: bytes, expiry: Callable[[], int]
) -> None:
    expires = expiry()
    answer = client.get("/api/files", query_string=signed_by_hand(settings, expires))

    assert answer.status_code == 403, answer.data
    body = answer.get_json()
    assert f"lives at most {settings.url_expiry} s" in body["message"]
    forged = client.get("/api/files", query_string={**signed_by_hand(settings, expires), "signature": "0" * 64})
    assert forged.status_code == 403 and set(forged.get_json()) == set(body)  # the shape of any bad signature


def test_a_valid_signature_within_the_lifetime_streams_the_file(
    client: FlaskClient, settings: Settings, stored: bytes
) -> None:
    answer = client.get("/api/files", query_string=signed_by_hand(settings, int(time.time()) + settings.url_expiry))

    assert answer.status_code == 200 and answer.data == stored


def test_a_longer_configured_lifetime_accepts_what_it_hands_out(settings: Settings, stored: bytes) -> None:
    """NECTAR_URL_EXPIRY is both what a status hands out and the longest expiry accepted."""
    day = 86400
    client = build_app(settings.replace(url_expiry=day)).test_client()

    within = client.get("/api/files", query_string=signed_by_hand(settings, int(time.time()) + day))
    beyond = client.get("/api/files", query_string=signed_by_hand(settings, int(time.time()) + 2 * day))

    assert within.status_code == 200 and within.data == stored
    assert beyond.status_code == 403 and f"lives at most {day} s" in beyond.get_json()["message"]
