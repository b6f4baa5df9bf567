"""The API's test world: an app from ``create_app`` on the temporary settings, and clients that
check every JSON answer's envelope repeats the real HTTP status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from nectar.config import Settings
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.helpers.suiteE_links import LinksOnce
from tests.links import check_links, fetched, is_status_answer


class EnvelopeClient(FlaskClient):
    """A test client asserting ``{"data", "message", "status"}`` with status == HTTP status, and fetching every
    link a status hands out at once: each must answer 200 (tests/links.py)."""

    #: while :func:`finished` waits: the statuses it checked the links of (each state's once, not each poll's)
    links_once: LinksOnce | None = None

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        own_json = (
            response.request.path.endswith("openapi.json")
            or response.status_code == 200
            and (
                response.request.path == "/api/files"  # a downloaded file is the task's, not an envelope
            )
        )
        if response.is_json and not own_json:
            body = response.get_json()
            assert {"data", "message", "status"} <= set(body), body
            assert body["status"] == response.status_code, body
            if is_status_answer(response.request.method, response.request.path, response.status_code):
                root = response.request.root_url  # the scheme, host and prefix the request came by
                source = f"{response.request.method} {response.request.full_path}"
                check = check_links if self.links_once is None else self.links_once.check
                check(body, source, lambda url: self._fetched(url, root))
        return response

    def _fetched(self, url: str, root: str) -> int:
        """A link's HTTP status: the app's own (under ``root``) served by this client, S3's over the network."""
        if not url.startswith(root):
            return fetched(url)
        answer = self.get(url[len(root) - 1 :], base_url=root)
        answer.close()  # a log is streamed: let go of its file
        return answer.status_code


def build_app(settings: Settings) -> Flask:
    """An app on ``settings``; its registry closed at the test's end (the test's own app)."""
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    app.test_client_class = EnvelopeClient
    closed_at_end(app.extensions["nectar"])
    return app


@pytest.fixture
def app(settings: Settings) -> Flask:
    return build_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client_for() -> Callable[[Settings], FlaskClient]:
    """A client of a fresh app on other settings (S3, a scheduler)."""
    return lambda settings: build_app(settings).test_client()


def finished(client: FlaskClient, status_url: str, timeout: float = 60) -> dict[str, Any]:
    """Poll a status URL until its job is DONE or FAILED; the answer's data. An envelope client fetches the links
    of each state's status once (:class:`~tests.helpers.suiteE_links.LinksOnce`), not at every poll."""

    def over() -> dict[str, Any] | None:
        answer = client.get(status_url)
        assert answer.status_code == 200, answer.get_json()
        data = answer.get_json()["data"]
        return data if data["job_status"] in {"DONE", "FAILED"} else None

    if isinstance(client, EnvelopeClient):
        client.links_once = LinksOnce()
    try:
        result = wait_until(over, timeout=timeout, interval=0.1)
    finally:
        if isinstance(client, EnvelopeClient):
            client.links_once = None
    assert isinstance(result, dict)
    return result
