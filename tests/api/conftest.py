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


class EnvelopeClient(FlaskClient):
    """A test client asserting ``{"data", "message", "status"}`` with status == HTTP status."""

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
        return response


def build_app(settings: Settings) -> Flask:
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    app.test_client_class = EnvelopeClient
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
    """Poll a status URL until its job is DONE or FAILED; the answer's data."""

    def over() -> dict[str, Any] | None:
        answer = client.get(status_url)
        assert answer.status_code == 200, answer.get_json()
        data = answer.get_json()["data"]
        return data if data["job_status"] in {"DONE", "FAILED"} else None

    result = wait_until(over, timeout=timeout, interval=0.1)
    assert isinstance(result, dict)
    return result
