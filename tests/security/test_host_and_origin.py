"""The Host allow-list (issue 17, point 2): a DNS-rebound page is refused on every endpoint, and the links the API
hands out never name a Host the client made up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from nectar.auth import digest
from nectar.config import Settings
from nectar.hostnames import host_name
from nectar.keys import TargetKey
from nectar.registry import Step
from nectar.task import create_live_logs
from tests.api.conftest import build_app

DEP = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"
HELLO = "/api/chains/testchains/hello_luigiworld_chain/TestS3Task"
REBOUND = {"Host": "rebind.evil.example:5000", "Origin": "http://rebind.evil.example:5000"}
PUBLIC = "http://nectar.example.com"


@pytest.fixture
def client_of(settings: Settings) -> Callable[..., FlaskClient]:
    """The envelope-checking client of a new app on the test's settings with ``changes``."""
    return lambda **changes: build_app(settings.replace(**changes)).test_client()


def every_request(flask_app: Flask) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, path) of every route of the app, path values made up."""
    adapter = flask_app.url_map.bind("localhost")
    for rule in flask_app.url_map.iter_rules():
        path = adapter.build(
            rule.endpoint, {name: "x" for name in rule.arguments}, method=sorted(rule.methods or ())[0]
        )
        for method in sorted(rule.methods or ()):
            yield rule.endpoint, method, path


@pytest.mark.parametrize("tokens", [False, True], ids=["tokens-off", "tokens-on"])
def test_a_foreign_host_is_421_on_every_endpoint_but_healthz(settings: Settings, tokens: bool) -> None:
    """Every route the app has (API, UI, files, docs, metrics, static files), every method: the JSON envelope naming
    the host and the settings that would allow it; a token changes nothing. /healthz answers any Host."""
    if tokens:
        settings = settings.replace(api_tokens=f"{digest('writer-token-0123456789').hex()}:write")
    plain = FlaskClient(build_app(settings))  # not the envelope-checking client: a HEAD answer has no body
    requests = list(every_request(plain.application))
    assert len(requests) > 30 and {"metrics", "files.File", "docs.swagger_ui", "ui.static", "session"} <= {
        endpoint for endpoint, _, _ in requests
    }
    for endpoint, method, path in requests:
        answer = plain.open(path, method=method, headers={"Host": "evil.example"})
        if endpoint == "health.Health":
            assert answer.status_code in (200, 503), (method, path, answer.status_code)
            continue
        assert answer.status_code == 421, (method, path, answer.status_code)
        if method != "HEAD":
            assert answer.get_json()["status"] == 421
            message = answer.get_json()["message"]
            assert "'evil.example'" in message and "NECTAR_PUBLIC_URL" in message and "NECTAR_ALLOWED_HOSTS" in message
    assert plain.get("/no/such/path", headers={"Host": "evil.example"}).status_code == 421


def test_the_dns_rebinding_requests_of_the_issue_are_refused(client_of: Callable[..., FlaskClient]) -> None:
    client = client_of()
    """The issue's requests: they were 202 and 200 with the data; nothing is queued now."""
    assert client.post(f"{DEP}?aparam=rebind", headers=REBOUND).status_code == 421
    assert client.get("/api/runs", headers=REBOUND).status_code == 421
    assert client.get("/api/runs").get_json()["data"] == []  # nothing was queued


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8000", "[::1]:5000", "LOCALHOST."])
def test_the_machine_s_own_names_are_answered_on_any_port(client_of: Callable[..., FlaskClient], host: str) -> None:
    client = client_of()
    assert client.get("/api/chains", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "localhost:x", "[::1]x", "[::2]", "::1"]
)
def test_look_alike_hosts_are_refused(client_of: Callable[..., FlaskClient], host: str) -> None:
    client = client_of()
    assert client.get("/api/chains", headers={"Host": host}).status_code == 421


def test_host_names_are_read_without_their_port() -> None:
    assert [host_name(h) for h in ("A.Example:80", "[::1]:5000", "[::1]", "x:", "x:1:2", "[::1")] == [
        "a.example",
        "[::1]",
        "[::1]",
        "x",
        "",
        "",
    ]


def test_the_public_name_and_the_allowed_names_are_answered(
    client_of: Callable[..., FlaskClient],
) -> None:
    client = client_of(public_url=f"{PUBLIC}/", allowed_hosts="Nectar.Internal, 10.0.0.7:5000")
    for host in ("nectar.example.com", "nectar.example.com:8443", "nectar.internal:5000", "10.0.0.7", "localhost"):
        assert client.get("/api/chains", headers={"Host": host}).status_code == 200, host
    assert client.get("/api/chains", headers={"Host": "example.com"}).status_code == 421


def test_a_public_url_that_is_not_one_stops_the_start(settings: Settings) -> None:
    for wrong in ("nectar.example.com", "ftp://nectar.example.com", "https://", "https://x/?a=1", "https://x:port"):
        with pytest.raises(ValueError, match="NECTAR_PUBLIC_URL"):
            settings.replace(public_url=wrong)


def test_the_origin_check_no_longer_trusts_the_host_it_is_compared_with(
    client_of: Callable[..., FlaskClient],
) -> None:
    """Writes from the public URL's pages pass even when a proxy forwards another (allowed) Host; an Origin whose
    host is not allowed is another site, whatever Host came with it."""
    client = client_of(public_url="https://nectar.example.com", allowed_hosts="api")
    public_page = {"Host": "api:5000", "Origin": "https://nectar.example.com"}
    assert client.post(HELLO, headers=public_page).status_code == 202
    assert client.post(HELLO, headers={"Host": "api:5000", "Origin": "http://api:5000"}).status_code == 202
    for origin in ("https://nectar.example.com.evil.example", "http://evil.example", "https://nectar.example.com:444"):
        answer = client.post(HELLO, headers={"Host": "api:5000", "Origin": origin})
        assert answer.status_code == 403 and "another site" in answer.get_json()["message"], origin


@pytest.mark.links_may_fail("links name the public URL, which no server of this test answers")
def test_links_start_with_the_public_url_whatever_host_the_request_came_by(
    client_of: Callable[..., FlaskClient],
) -> None:
    """status_url, run_url, cancel_url, the logs' and the output's URLs: all the public URL's, from any allowed
    Host; a made-up Host gets no link at all (421). Before, ``Host: evil.example`` gave
    ``resource_url: http://evil.example/api/files?...&signature=...``."""
    client = client_of(public_url=f"{PUBLIC}/nectar", allowed_hosts="nectar.internal")
    nectar = client.application.extensions["nectar"]
    queued = client.post(HELLO, headers={"Host": "nectar.internal:5000"}).get_json()["data"]
    run = nectar.runs.claim("test:1", queued["run_id"])  # a worker's claim, a step with logs, then done
    step = Step(run.id, run.task_id, run.task, run.key, "RUNNING", executed=True)
    create_live_logs(TargetKey.parse(run.key))
    nectar.runs.record_step(step)
    nectar.store.write_text(TargetKey.parse(run.key), "done\n")
    nectar.runs.record_step(replace(step, state="DONE"))
    assert nectar.runs.complete(run.id, run.attempt)

    status_path = queued["status_url"].removeprefix(f"{PUBLIC}/nectar")
    for host in ("localhost", "nectar.internal:5000", "127.0.0.1:5000"):
        status = client.get(status_path, headers={"Host": host}).get_json()["data"]
        run_answer = client.get(f"/api/runs/{run.id}", headers={"Host": host}).get_json()["data"]
        urls = [status[name] for name in ("run_url", "resource_url", "stdout_url", "stderr_url")]
        urls += [status["steps"][0]["stdout_url"], run_answer["status_url"], run_answer["cancel_url"]]
        urls += [client.get("/api/chains", headers={"Host": host}).get_json()["data"][0]["api_href"]]
        assert all(url.startswith(f"{PUBLIC}/nectar/api/") for url in urls), (host, urls)
    assert queued["status_url"].startswith(f"{PUBLIC}/nectar/api/chainstatus?chain=chains/testchains/")
    evil = client.get(status_path, headers={"Host": "evil.example"})
    assert evil.status_code == 421 and "evil.example/" not in evil.get_data(as_text=True)


def test_without_a_public_url_links_follow_the_allowed_host_they_came_by(
    client_of: Callable[..., FlaskClient],
) -> None:
    client = client_of(allowed_hosts="nectar.internal")
    queued = client.post(HELLO, headers={"Host": "nectar.internal:5000"}).get_json()["data"]
    assert queued["status_url"].startswith("http://nectar.internal:5000/api/chainstatus?chain=")
    assert client.post(HELLO, headers={"Host": "evil.example"}).status_code == 421
