"""What requests can write into the service's logs and metrics (issue 17, points 4, 5 and 9), through ``nectar
serve`` (luigid, a worker and gunicorn, as deployed) and, for the JSON access log, gunicorn alone."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import Cluster, Processes
from nectar.logs.format import CONTINUATION
from tests.conftest import REPO, wait_until
from tests.nectar.test_serve import Served, _serve

FORGED_AT = "2026-12-01 16:00:00,000"
#: issue 17's parameter: a line break, a line as the text format writes one, and an escape sequence clearing a terminal
FORGED = {"p": f"q\n{FORGED_AT} CRITICAL nectar.serve: FORGED LOG LINE\u001b[2J"}
FAILING_CHAIN = '''"""A task that fails, its parameter in its error."""

import luigi

from nectar import NectarTask


class FailsTask(NectarTask):
    p = luigi.Parameter()

    def run(self):
        raise ValueError(f"cannot use {self.p}")
'''
#: a query's secrets, as a client that sends a token in the URL and a signed download URL put them there
SECRETS = {"token": "tok-3b7e1f", "access_token": "acc-9d2c44", "signature": "sig-51aa0e"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``nectar serve`` in the text log format with gunicorn's access log on, the example chains and a failing one."""
    root = tmp_path_factory.mktemp("logs")
    chains = root / "chains"
    shutil.copytree(REPO / "chains", chains, ignore=shutil.ignore_patterns("__pycache__"))
    (chains / "testchains" / "failing_chain.py").write_text(FAILING_CHAIN)
    env = {"NECTAR_CHAINS_DIR": str(chains), "NECTAR_RETRIES": "0", "NECTAR_ACCESS_LOG": "-"}
    yield from _serve(root, env)


@pytest.fixture(scope="module")
def json_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """gunicorn alone in the JSON log format: its URL and its log."""
    procs = Processes(tmp_path_factory.mktemp("json-api") / "logs")
    try:
        url = Cluster(procs, procs.logs.parent / "world").start_api(workers=1, NECTAR_LOG_FORMAT="json")
        yield url, procs.logs / "api-0.log"
    finally:
        procs.close()


def test_a_parameter_cannot_forge_a_line_of_the_service_log(service: Served) -> None:
    """The failing task's parameter reaches the log in luigi's failure record and in its traceback: each time escaped,
    the traceback's lines indented; no line starts with the forged time and no ESC reaches the terminal."""
    answer = requests.post(f"{service.api}/api/chains/testchains/failing_chain/FailsTask", json=FORGED, timeout=60)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["data"]["run_id"]
    ended = f"run {run_id} of testchains/failing_chain/FailsTask: attempt 1 ended: FAILED"
    wait_until(lambda: ended in service.log.read_text(errors="replace"), timeout=60)

    log = service.log.read_text(errors="replace")
    forged = [line for line in log.splitlines() if line.startswith(FORGED_AT)]
    assert not forged, log
    assert "\x1b" not in log, log
    failure = next(line for line in log.splitlines() if "failed" in line and "FailsTask(p=q" in line)
    assert failure.endswith(f"FailsTask(p=q\\n{FORGED_AT} CRITICAL nectar.serve: FORGED LOG LINE\\x1b[2J)"), failure
    assert f"{CONTINUATION}Traceback (most recent call last):" in log, log
    assert f"{CONTINUATION}{FORGED_AT} CRITICAL nectar.serve: FORGED LOG LINE\\x1b[2J" in log, log


def _latency_series(base: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    scraped = requests.get(f"{base}/metrics", timeout=60)
    assert scraped.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(scraped.text)
        if family.name == "nectar_http_request_duration_seconds"
        for sample in family.samples
    }


def _made_up_requests(base: str, i: int) -> None:
    """A made-up method on a route, on a path of no route, and a known method on a path of no route."""
    method = f"ZQ{i}{'XYZW'[i % 4]}"
    requests.request(method, f"{base}/api/chains", timeout=60)
    requests.request(method, f"{base}/made/up/{i}?x={i}", timeout=60)
    requests.get(f"{base}/api/nothing-here-{i}", timeout=60)


def test_made_up_methods_and_paths_add_no_series_after_the_first_other(service: Served) -> None:
    _made_up_requests(service.api, 0)  # ZQ0X /api/chains: issue 17's request
    _latency_series(service.api)  # the scrape itself is a series from the next scrape on
    before = _latency_series(service.api)

    for i in range(1, 40):
        _made_up_requests(service.api, i)

    after = _latency_series(service.api)
    assert after == before, sorted(after - before)[:20]
    labels = [dict(labels) for _, labels in after]
    assert any(found["method"] == found["endpoint"] == "other" for found in labels), after


def _access_lines(log: str, log_format: str) -> list[str]:
    if log_format == "text":
        return [line for line in log.splitlines() if re.match(r"127\.0\.0\.1 - - \[", line)]
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [event["message"] for event in events if event["logger"] == "gunicorn.access"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_credentials_in_urls_are_redacted_from_the_access_log(request: pytest.FixtureRequest, log_format: str) -> None:
    if log_format == "text":
        served: Served = request.getfixturevalue("service")
        base, log_file = served.api, served.log
    else:
        base, log_file = request.getfixturevalue("json_api")
    key = "chains/testchains/hello_luigiworld_chain/TestS3Task/99914b932bd37a50b983c5e7c90ae93b/out.txt"
    urls = [
        f"{base}/api/runs?token={SECRETS['token']}&limit=1",
        f"{base}/api/files?key={key}&expires=4102444800&signature={SECRETS['signature']}",
        f"{base}/api/chains?access_token={SECRETS['access_token']}",
    ]
    for url in urls:
        requests.get(url, headers={"Referer": url}, timeout=60)

    def logged() -> list[str]:
        lines = _access_lines(log_file.read_text(errors="replace"), log_format)
        return [line for line in lines if "/api/files?" in line or "/api/runs?" in line or "/api/chains?" in line]

    lines = wait_until(lambda: found if len(found := logged()) >= 3 else None, timeout=60)
    text = "\n".join(lines)
    for secret in SECRETS.values():
        assert secret not in log_file.read_text(errors="replace"), text
    assert "token=[redacted]&limit=1" in text and "signature=[redacted]" in text, text
    assert "access_token=[redacted]" in text and f"key={key}" in text, text
    assert '"http://127.0.0.1:' in text and '/api/runs?token=[redacted]&limit=1"' in text, text  # the Referer too
