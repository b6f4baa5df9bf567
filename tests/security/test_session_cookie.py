"""The web UI's session cookie (issue 17, point 8): opaque, HttpOnly, SameSite=Strict, Secure over HTTPS, holding
nothing of the token; recognised by every API process that shares the secret; ended by logout. And /api/docs
under the UI's Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from api.ui import CONTENT_SECURITY_POLICY
from nectar.auth import Scope, TokenEntry, digest
from nectar.config import Settings
from nectar.sessions import SessionSigner
from tests.api.conftest import build_app

READER, WRITER = "reader-token-0123456789", "writer-token-0123456789"
TOKENS = f"{digest(READER).hex()}:read:dashboard,{digest(WRITER).hex()}:write:ci"
PAGE = "/ui/runs"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client_of(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FlaskClient]:
    """A client of a new app on the test's settings with tokens on and ``changes``; every app of a test shares one
    secret (as the gunicorn workers and machines of a deployment do)."""
    monkeypatch.setenv("NECTAR_SECRET_KEY", "a-secret-the-deployment-shares")
    return lambda **changes: build_app(settings.replace(**{"api_tokens": TOKENS, **changes})).test_client()


def session_cookie(answer: Any) -> tuple[str, dict[str, str]]:
    """The value and the attributes (lower-case names) of the answer's ``nectar_session`` Set-Cookie."""
    [header] = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("nectar_session=")]
    first, *attributes = (part.strip() for part in header.split(";"))
    pairs = (attribute.partition("=") for attribute in attributes)
    return first.partition("=")[2], {name.lower(): value for name, _, value in pairs}


def test_the_session_cookie_is_httponly_strict_and_holds_nothing_of_the_token(
    client_of: Callable[..., FlaskClient],
) -> None:
    client = client_of()
    answer = client.post("/ui/session", headers=bearer(READER))
    assert answer.status_code == 204
    value, attributes = session_cookie(answer)
    assert "httponly" in attributes and attributes["samesite"] == "Strict" and attributes["path"] == "/"
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    for secret in (READER, digest(READER).hex(), digest(READER).hex()[:8], "dashboard"):
        assert secret not in value
    assert re.fullmatch(r"\d+\.[0-9a-f]{32}\.[0-9a-f]{64}", value)
    assert client.get(PAGE).status_code == 200
    # no cookie holds the raw token any more: the old one is cleared and counts for nothing
    assert any(h.startswith("nectar_token=;") for h in answer.headers.getlist("Set-Cookie"))
    fresh = client_of()
    fresh.set_cookie("nectar_token", READER)
    assert fresh.get(PAGE).status_code == 401


@pytest.mark.parametrize(
    ("base_url", "public_url"), [("https://localhost", None), ("http://localhost", "https://nectar.example.com")]
)
def test_the_session_cookie_is_secure_over_https(
    client_of: Callable[..., FlaskClient], base_url: str, public_url: str | None
) -> None:
    client = client_of(public_url=public_url)
    answer = client.post("/ui/session", headers=bearer(READER), base_url=base_url)
    assert "secure" in session_cookie(answer)[1]


def test_a_session_needs_a_valid_token(client_of: Callable[..., FlaskClient]) -> None:
    client = client_of()
    for headers in ({}, bearer("not-a-token"), {"Authorization": f"Basic {READER}"}):
        answer = client.post("/ui/session", headers=headers)
        assert answer.status_code == 401 and "Bearer" in answer.get_json()["message"]
        assert not any(h.startswith("nectar_session=") for h in answer.headers.getlist("Set-Cookie"))
    # a page of another site cannot open one (login CSRF) nor end one
    for method in ("POST", "DELETE"):
        headers = {**bearer(READER), "Origin": "https://evil.example"}
        assert client.open("/ui/session", method=method, headers=headers).status_code == 403


def test_another_worker_or_machine_with_the_secret_knows_the_session(client_of: Callable[..., FlaskClient]) -> None:
    """No process memory: a session opened by one app is recognised by another; a token taken out of the
    configuration ends its sessions; another secret knows none."""
    value = session_cookie(client_of().post("/ui/session", headers=bearer(READER)))[0]
    other = client_of()
    other.set_cookie("nectar_session", value)
    assert other.get(PAGE).status_code == 200
    revoked = client_of(api_tokens=f"{digest(WRITER).hex()}:write:ci")
    revoked.set_cookie("nectar_session", value)
    assert revoked.get(PAGE).status_code == 401


def test_logout_clears_the_cookie(client_of: Callable[..., FlaskClient]) -> None:
    client = client_of()
    client.post("/ui/session", headers=bearer(READER))
    answer = client.delete("/ui/session")
    assert answer.status_code == 204
    [cleared] = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith("nectar_session=")]
    assert "Max-Age=0" in cleared
    assert client.get_cookie("nectar_session") is None and client.get(PAGE).status_code == 401


def test_a_session_ends_when_it_expires_and_cannot_be_forged() -> None:
    signer = SessionSigner(b"secret", lifetime=60)
    entry = TokenEntry(digest(READER), Scope.READ, "dashboard")
    value = signer.open(entry, now=1000)
    assert signer.entry(value, [entry], now=1059) == entry
    assert signer.entry(value, [entry], now=1061) is None
    expires, nonce, mac = value.split(".")
    for forged in (f"{int(expires) + 100}.{nonce}.{mac}", f"{expires}.{nonce}.{'0' * 64}", "x", "", f"{expires}.."):
        assert signer.entry(forged, [entry], now=1000) is None
    assert SessionSigner(b"other secret").entry(value, [entry], now=1000) is None


def test_the_docs_page_has_the_ui_s_csp_and_only_local_scripts(settings: Settings, tmp_path: Path) -> None:
    client = build_app(settings).test_client()
    answer = client.get("/api/docs")
    assert answer.status_code == 200
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and answer.headers["X-Content-Type-Options"] == "nosniff"
    page = answer.get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all(body.strip() == "" for _, body in scripts)  # no inline script: CSP would block it
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert all(source.startswith("/") or source == "data:," for source in sources), sources
    for source in sources:
        if source.startswith("/"):
            assert client.get(source).status_code == 200, source
