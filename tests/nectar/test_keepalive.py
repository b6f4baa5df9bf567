"""A client that waits the Retry-After it was told and reuses its connection finds it open (gunicorn's keep-alive
outlasts the service's Retry-After)."""

from __future__ import annotations

import http.client
import time

import pytest

from harness import Processes
from nectar.config import Settings

#: a Retry-After longer than gunicorn's old keep-alive (5 s), so that the old setting fails this test
RETRY_AFTER = 6


@pytest.fixture
def api(settings: Settings, processes: Processes) -> int:
    return processes.nectar_api(settings.replace(retry_after=RETRY_AFTER)).port


def test_a_connection_idle_for_the_retry_after_is_still_open(api: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection", "").lower() != "close"
        time.sleep(RETRY_AFTER)  # the client does exactly what a 503 told it: comes back after Retry-After seconds
        connection.request("GET", "/healthz")  # on the same connection: http.client does not reconnect by itself
        again = connection.getresponse()
        again.read()
        assert again.status == 200
    finally:
        connection.close()
