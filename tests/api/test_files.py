"""Signed downloads of local targets: a valid URL streams the file; tampering, expiry, bad keys do not."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from nectar.config import Settings
from nectar.errors import InvalidSignature
from nectar.keys import TargetKey
from nectar.signing import SECRET_ENV, UrlSigner, load_secret

KEY = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "a" * 32)


@pytest.fixture
def stored(settings: Settings) -> bytes:
    """A real file in the local store at KEY."""
    content = b"bytes on disk\n" * 1000
    path = settings.local_targets_dir / KEY.path
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return content


def files_url(query: dict[str, str]) -> str:
    return f"/api/files?{urlencode(query)}"


def test_a_signed_url_streams_the_file(app: Flask, client: FlaskClient, stored: bytes) -> None:
    answer = client.get(files_url(app.extensions["nectar_signer"].sign(KEY.path, 60)))
    assert answer.status_code == 200 and answer.data == stored and answer.mimetype == "text/plain"
    assert answer.content_length == len(stored)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda q: {**q, "signature": "0" * 64}, "does not match"),
        (lambda q: {**q, "signature": q["signature"][:-1]}, "does not match"),
        (lambda q: {**q, "expires": str(int(q["expires"]) + 3600)}, "does not match"),
        (lambda q: {**q, "expires": "soon"}, "not a unix time"),
        (lambda q: {**q, "key": KEY.with_file("params.txt").path}, "does not match"),
    ],
    ids=["forged", "truncated", "extended-expiry", "bad-expiry", "other-file"],
)
def test_a_tampered_url_is_403(
    app: Flask, client: FlaskClient, stored: bytes, change: Callable[[dict[str, str]], dict[str, str]], says: str
) -> None:
    query = change(app.extensions["nectar_signer"].sign(KEY.path, 60))
    answer = client.get(files_url(query))
    assert answer.status_code == 403 and says in answer.get_json()["message"]


def test_an_expired_url_is_403(app: Flask, client: FlaskClient, stored: bytes) -> None:
    query = app.extensions["nectar_signer"].sign(KEY.path, 60, now=time.time() - 61)
    answer = client.get(files_url(query))
    assert answer.status_code == 403 and "expired" in answer.get_json()["message"]


@pytest.mark.parametrize("key", ["../../etc/passwd", "chains/a/b/C/" + "a" * 32 + "/../../x", "/etc/passwd"])
def test_a_key_outside_the_grammar_is_400_even_if_signed(app: Flask, client: FlaskClient, key: str) -> None:
    answer = client.get(files_url(app.extensions["nectar_signer"].sign(key, 60)))
    assert answer.status_code == 400


def test_an_absent_file_is_404(app: Flask, client: FlaskClient) -> None:
    answer = client.get(files_url(app.extensions["nectar_signer"].sign(KEY.path, 60)))
    assert answer.status_code == 404 and KEY.path in answer.get_json()["message"]


def test_missing_query_fields_are_422(client: FlaskClient) -> None:
    answer = client.get(files_url({"key": KEY.path}))
    assert answer.status_code == 422
    assert set(answer.get_json()["errors"]) == {"expires", "signature"}


def test_apps_sharing_a_data_folder_share_the_secret(
    settings: Settings, stored: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first, second = (create_app({"NECTAR_SETTINGS": settings}) for _ in range(2))
    query = first.extensions["nectar_signer"].sign(KEY.path, 60)
    assert second.test_client().get(files_url(query)).data == stored
    secret_file = settings.data_dir / "secret_key"
    assert secret_file.stat().st_mode & 0o777 == 0o600


def test_the_secret_comes_from_the_environment_when_set(settings: Settings, tmp_path: Path) -> None:
    secret = load_secret(settings, {SECRET_ENV: "from-env"})
    assert secret == b"from-env"
    query = UrlSigner(b"from-env").sign(KEY.path, 60)
    UrlSigner(secret).verify(query["key"], query["expires"], query["signature"])
    with pytest.raises(InvalidSignature):
        UrlSigner(b"another").verify(query["key"], query["expires"], query["signature"])


def test_a_signature_is_the_hmac_of_its_key_and_expiry_each_signed_apart() -> None:
    """The documented signature (hex HMAC-SHA256 of ``<key>\\n<expires>``), whatever the signer signed before."""
    signer = UrlSigner(b"the secret")
    keys = [KEY.path, KEY.with_file("other.txt").path, KEY.path]
    signed = [signer.sign(key, 60, now=1_000_000) for key in keys]

    for key, query in zip(keys, signed, strict=True):
        expected = hmac.new(b"the secret", f"{key}\n1000060".encode(), hashlib.sha256).hexdigest()
        assert (query["key"], query["expires"], query["signature"]) == (key, "1000060", expected)
    assert signed[0] == signed[2] != signed[1]


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_symlink_out_of_the_local_store_is_never_followed(
    app: Flask, client: FlaskClient, settings: Settings, tmp_path: Path, link: str
) -> None:
    """A signed, well-formed key whose file (or a folder on its way) links outside the store is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("a secret outside the store\n")
    path = settings.local_targets_dir / KEY.path
    if link == "file":
        path.parent.mkdir(parents=True)
        path.symlink_to(outside / "out.txt")
    else:
        path.parent.parent.mkdir(parents=True)
        path.parent.symlink_to(outside, target_is_directory=True)

    answer = client.get(files_url(app.extensions["nectar_signer"].sign(KEY.path, 60)))

    assert answer.status_code == 400, answer.data
    assert b"secret" not in answer.data
    assert "outside the local targets folder" in answer.get_json()["message"]


@pytest.mark.parametrize(
    ("filename", "served_as"),
    [
        ("out.txt", "text/plain"),
        ("log/stderr.log", "text/plain"),
        ("summary.json", "application/json"),
        ("table.csv", "text/csv"),
        ("report.html", "application/octet-stream"),
        ("image.svg", "application/octet-stream"),
        ("script.js", "application/octet-stream"),
    ],
)
def test_only_plain_data_types_are_served_as_such(
    app: Flask, client: FlaskClient, settings: Settings, filename: str, served_as: str
) -> None:
    """An output can never run as a page of the API's origin: anything but text, CSV and JSON is bytes."""
    key = KEY.with_file(filename)
    path = settings.local_targets_dir / key.path
    path.parent.mkdir(parents=True)
    path.write_text('"<script>alert(1)</script>"\n')  # also a JSON document

    answer = client.get(files_url(app.extensions["nectar_signer"].sign(key.path, 60)))

    assert answer.status_code == 200
    assert answer.mimetype == served_as
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
