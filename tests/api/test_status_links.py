"""The links of a status answer, each built once: its task's log URLs for the top-level fields and for its step."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import links
from benchmarks.population import Probe, fill_registry, fill_store
from nectar import signing
from nectar.config import Settings
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from tests.clock import Clock


def test_a_status_parses_its_key_once_and_links_its_step_to_the_same_logs(
    app: Flask, client: FlaskClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the two answers compared sign their download URLs in the same second (expires is a whole unix second)
    Clock(time.time()).install(monkeypatch, signing)
    fill_registry(settings.registry_path, range(1))
    fill_store(settings.local_targets_dir, range(1))
    key = Probe(0).key
    for name in (STDOUT_FILE, STDERR_FILE):  # its stored logs: every link handed out answers
        log = settings.local_targets_dir / key.with_file(name).path
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("probe ran\n")
    answer = client.get(f"/api/chainstatus?chain={key.path}").get_json()["data"]  # its links answer, too
    parsed: list[str] = []
    parse = vars(TargetKey)["parse"].__func__  # the classmethod's function

    def counted(cls: type[TargetKey], text: str) -> TargetKey:
        parsed.append(text)
        return parse(cls, text)

    monkeypatch.setattr(TargetKey, "parse", classmethod(counted))

    again = FlaskClient(app, app.response_class).get(f"/api/chainstatus?chain={key.path}").get_json()["data"]

    assert again == answer
    assert parsed == [key.path]  # the query's; the step's key is the one its log URLs were built for already
    assert answer["job_status"] == "DONE"
    (step,) = answer["steps"]
    assert (step["stdout_url"], step["stderr_url"]) == (answer["stdout_url"], answer["stderr_url"])
    assert answer["stdout_url"].endswith(f"/api/logs?chain={key.path}&stream=stdout")


@pytest.mark.parametrize(
    ("run_id", "path"), [("0a1b2c", "/api/runs/0a1b2c"), ("a/b c", "/api/runs/a%2Fb%20c"), ("é", "/api/runs/%C3%A9")]
)
def test_a_run_url_quotes_what_is_not_letters_and_digits(app: Flask, run_id: str, path: str) -> None:
    with app.test_request_context("/"):
        assert links.run_url(run_id) == f"http://localhost{path}"
