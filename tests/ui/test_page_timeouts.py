"""The browser tests' pages (tests/helpers/browser.py): an action waits as long as an ``expect``, the suite's least
deadline, not Playwright's 30 s."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.browser import EXPECT_TIMEOUT_MS

#: how long the page's server holds its answer: longer than Playwright's own 30 s, shorter than the suite's 60 s
HELD_S = 35.0


@pytest.fixture
def slow_site() -> Iterator[str]:
    """A local site whose one page answers :data:`HELD_S` after it is asked (a page behind a loaded API)."""

    class Held(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(HELD_S)
            body = b"<html><body><button id='go' onclick=\"this.textContent='went'\">go</button></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_navigation_waits_past_playwrights_30_s_up_to_the_suites_deadline(page: Any, slow_site: str) -> None:
    """A ``goto`` of a page that answers after 35 s, then a click on it: each under one default of the context."""
    from playwright.sync_api import expect

    assert HELD_S * 1000 < EXPECT_TIMEOUT_MS
    page.goto(slow_site)  # Playwright's default: TimeoutError at 30 s
    page.click("#go")
    expect(page.locator("#go")).to_have_text("went")
