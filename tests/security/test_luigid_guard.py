"""luigid behind its guard (issue 17, points 1, 3, 10 and 14): through a real ``nectar serve`` with API tokens on,
a page of another site or a process without the scheduler secret cannot change luigid's state, nobody reads its
task list without a token, our own workers still run a chain, a paused luigid shows in /healthz, no answer names
its server, and the visualiser still lists a task in Chromium."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from nectar.auth import digest
from nectar.config import Settings
from nectar.luigid import SECRET_HEADER, SchedulerClient, scheduler_secret
from tests.conftest import wait_until
from tests.helpers.browser import expect
from tests.nectar.test_serve import HELLO, Served, _serve

READER, WRITER = "reader-token-for-the-guard-test", "writer-token-for-the-guard-test"
FOREIGN = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``nectar serve`` on free ports, API tokens on (a reader and a writer), its luigid behind the guard."""
    tokens = f"{digest(READER).hex()}:read:reader,{digest(WRITER).hex()}:write:writer"
    yield from _serve(tmp_path_factory.mktemp("guarded"), {"NECTAR_API_TOKENS": tokens}, bearer(READER))


@pytest.fixture(scope="module")
def our_secret(served: Served) -> str:
    """The secret ``serve`` keeps in its data folder."""
    settings = Settings(data_dir=served.cwd / "nectar_data", scheduler_url=served.scheduler)
    secret = scheduler_secret(settings)
    assert secret and (served.cwd / "nectar_data" / "scheduler_secret").stat().st_mode & 0o077 == 0
    return secret


@pytest.fixture(scope="module")
def ours(served: Served, our_secret: str) -> SchedulerClient:
    """luigid as our own processes reach it: with the secret."""
    return SchedulerClient(served.scheduler, timeout=60, secret=our_secret)


def paused(ours: SchedulerClient) -> bool:
    return bool(ours.call("is_paused")["paused"])


def run_hello(served: Served) -> dict[str, Any]:
    """Launch the hello world's TestS3Task through the API and wait until our workers have run it."""
    answer = requests.post(f"{served.api}/api/chains/{HELLO}/TestS3Task", headers=bearer(WRITER), timeout=60)
    assert answer.status_code in (200, 202), answer.text
    status_url = answer.json()["data"]["status_url"]

    def done() -> dict[str, Any] | None:
        status = requests.get(status_url, headers=bearer(READER), timeout=60).json()
        return status if status["data"]["job_status"] == "DONE" else None

    return wait_until(done, timeout=60, interval=0.2)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/pause?data={}", FOREIGN),  # what <img src> on any site sends
        ("/api/pause?data={}", {"Sec-Fetch-Site": "cross-site"}),
        ("/api/pause?data={}", {"Origin": "http://evil.example"}),
        ('/api/update_resource?data={"resource":"hello","amount":0}', FOREIGN),
    ],
)
def test_a_page_of_another_site_cannot_change_luigid(
    served: Served, ours: SchedulerClient, path: str, headers: dict[str, str]
) -> None:
    answer = requests.get(f"{served.scheduler}{path}", headers=headers | bearer(READER), timeout=60)
    assert answer.status_code == 403, answer.text
    assert "another site" in answer.json()["message"] or "Origin" in answer.json()["message"]
    assert not paused(ours)
    assert not any(pool["name"] == "hello" for pool in ours.call("resource_list"))


@pytest.mark.parametrize("path", ["/api/pause", "/api/%70ause", "/api/prune", "/api/add_worker"])
@pytest.mark.parametrize("secret", [None, "not-the-secret"])
@pytest.mark.parametrize("encoding", [None, "identity"])  # identity: POSTed as our processes POST an RPC
def test_a_process_without_the_secret_cannot_change_luigid(
    served: Served, ours: SchedulerClient, path: str, secret: str | None, encoding: str | None
) -> None:
    headers = bearer(WRITER) | ({SECRET_HEADER: secret} if secret else {})
    headers |= {"Accept-Encoding": encoding} if encoding else {}
    answer = requests.post(f"{served.scheduler}{path}", data={"data": "{}"}, headers=headers, timeout=60)
    assert answer.status_code == 403, answer.text
    assert "only Datanectar's own processes" in answer.json()["message"]
    assert not paused(ours)


def test_our_workers_run_a_chain_and_a_paused_luigid_shows_in_healthz(served: Served, ours: SchedulerClient) -> None:
    run_hello(served)
    assert requests.get(f"{served.api}/healthz", timeout=60).json()["message"] == "ok"
    ours.call("pause")  # with the secret, as our processes call it
    try:
        assert paused(ours)
        health = requests.get(f"{served.api}/healthz", timeout=60)
        assert health.status_code == 200
        assert health.json()["data"]["scheduler"]["status"] == "degraded"
        assert "luigid is paused" in health.json()["message"], health.json()
    finally:
        ours.call("unpause")
    assert requests.get(f"{served.api}/healthz", timeout=60).json()["message"] == "ok"


def test_luigid_task_and_worker_lists_need_a_read_token(served: Served) -> None:
    lists = ["/api/task_list?data={}", "/api/worker_list?data={}"]
    for path in lists:
        anonymous = requests.get(f"{served.scheduler}{path}", timeout=60)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
        assert "params" not in anonymous.text and "response" not in anonymous.json()
        wrong = requests.get(f"{served.scheduler}{path}", headers=bearer("not-a-token"), timeout=60)
        assert wrong.status_code == 401
    basic = "Basic " + base64.b64encode(f"anyone:{READER}".encode()).decode()
    from_our_ui = {"Origin": served.api, "Sec-Fetch-Site": "same-site"}  # the API's pages link the visualiser
    for headers in (bearer(READER), {"Authorization": basic}, bearer(READER) | from_our_ui):
        assert requests.get(f"{served.scheduler}{lists[0]}", headers=headers, timeout=60).status_code == 200


@pytest.mark.parametrize("host", ["rebind.evil.example", "rebind.evil.example:8082", "127.0.0.1.evil.example"])
def test_a_foreign_host_is_refused(served: Served, host: str) -> None:
    """A DNS-rebound page reaches luigid's address under its own name."""
    answer = requests.get(
        f"{served.scheduler}/api/task_list?data={{}}", headers=bearer(READER) | {"Host": host}, timeout=60
    )
    assert answer.status_code == 421, answer.text


def test_no_answer_names_the_server(served: Served, our_secret: str) -> None:
    answers = [
        requests.get(f"{served.scheduler}/static/visualiser/index.html", headers=bearer(READER), timeout=60),
        requests.get(f"{served.scheduler}/api/task_list?data={{}}", headers=bearer(READER), timeout=60),
        requests.get(f"{served.scheduler}/api/no_such_rpc", headers={SECRET_HEADER: "x"}, timeout=60),
        requests.get(f"{served.scheduler}/api/pause", headers=FOREIGN, timeout=60),
        requests.get(f"{served.scheduler}/no/such/page", headers=bearer(READER), timeout=60),
        requests.post(  # an RPC as our processes POST it: luigid's scheduler answers it at once
            f"{served.scheduler}/api/is_paused",
            data={"data": "{}"},
            headers={SECRET_HEADER: our_secret, "Accept-Encoding": "identity"},
            timeout=60,
        ),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 403, 403, 404, 200]
    for answer in answers:
        assert "Server" not in answer.headers, (answer.url, answer.headers)
        assert "Tornado" not in answer.text


def test_the_visualiser_lists_a_task_in_chromium(served: Served, browser: Any) -> None:  # noqa: F811
    run_hello(served)
    context = browser.new_context(http_credentials={"username": "visitor", "password": READER})
    try:
        page = context.new_page()
        page.goto(f"{served.scheduler}/static/visualiser/index.html")
        expect(page.locator("#taskTable")).to_contain_text("TestS3Task")
    finally:
        context.close()
