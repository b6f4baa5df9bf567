"""What each API worker would make on its first requests is made once, in gunicorn's master before it forks them
(api/warm.py), and the warming answers, times and counts nothing; that a worker then answers a status lookup with its
master's is tests/nectar/test_gunicorn_prefork.py's."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from api import links
from api.warm import EXTENSION
from harness import Processes, base_env, settings_env
from nectar.config import Settings
from nectar.service import Nectar
from nectar.stores.s3 import S3Store
from tests.api.conftest import build_app
from tests.helpers.credentials_endpoint import container_role, model_files_read
from tests.helpers.registries import closed_at_end

#: a Host the API answers to, and one it refuses
OWN, FOREIGN = "127.0.0.1:5000", "rebind.evil.example:5000"


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_metrics_count_no_request_after_the_start(settings: Settings, tmp_path: Path) -> None:
    """The master warms the app without answering a request: its first scrape counts the start's health probes
    alone (the harness's), the status lookup's series absent until a lookup is made, then counted once."""
    key = closed_at_end(Nectar(settings)).submit("testchains", "hello_luigiworld_chain", "TestS3Task", {}).key
    processes = Processes(tmp_path / "logs")
    try:
        served = processes.nectar_api(settings, workers=1, threads=1)
        endpoints = counted(served.port)
        assert set(endpoints) <= {"/healthz"}, f"requests counted that nobody made: {endpoints}"
        assert get(served.port, f"/api/chainstatus?chain={key.path}")[0] == 200
        assert counted(served.port).get("/api/chainstatus") == 1.0
    finally:
        processes.close()


def counted(port: int) -> dict[str, float]:
    """Requests ``/metrics`` counts by endpoint (a series counting none included)."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    found: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("nectar_http_request_duration_seconds_count{"):
            labels, _, value = line.rpartition(" ")
            endpoint = labels.partition('endpoint="')[2].partition('"')[0]
            found[endpoint] = found.get(endpoint, 0.0) + float(value)
    return found


@pytest.fixture
def bases(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str, str, str], str]:
    """links' URL bases, empty for this test."""
    fresh: dict[tuple[str, str, str, str], str] = {}
    monkeypatch.setattr(links, "_BASES", fresh)
    return fresh


def warmed(app: Flask, *hosts: str, root: str = "") -> None:
    app.extensions[EXTENSION](hosts, "http", root)


def test_the_bases_are_made_for_the_hosts_the_api_answers_to(
    settings: Settings, bases: dict[tuple[str, str, str, str], str]
) -> None:
    app = build_app(settings)
    warmed(app, OWN, FOREIGN, root="/nectar")
    assert {where[1:] for where in bases} == {("http", OWN, "/nectar")}
    assert bases[("status.ChainStatus", "http", OWN, "/nectar")] == f"http://{OWN}/nectar/api/chainstatus"


def test_with_a_public_url_the_bases_are_made_whatever_host_gunicorn_listens_on(
    settings: Settings, bases: dict[tuple[str, str, str, str], str]
) -> None:
    public = "https://nectar.example.com"
    app = build_app(settings.replace(public_url=public))
    warmed(app)  # a wildcard address (0.0.0.0): no Host known
    assert {where[1:] for where in bases} == {(public, "", "")}
    assert bases[("runs.Runs", public, "", "")] == f"{public}/api/runs"


def test_warming_opens_neither_the_registry_nor_a_connection(
    settings: Settings, bases: dict[tuple[str, str, str, str], str]
) -> None:
    """Nothing that must not cross a fork: the registry, luigid's connections and an S3 client are each process's
    own, made on first use."""
    app = build_app(settings.replace(scheduler_url="http://127.0.0.1:9"))  # nothing listens: nothing may connect
    warmed(app, OWN)
    service: Nectar = app.extensions["nectar"]
    assert "runs" not in vars(service), "the registry was opened"
    assert service.scheduler is not None and not vars(service.scheduler.connections._local)
    assert bases


def test_warming_makes_an_s3_store_without_its_client(
    s3_settings: Settings, bases: dict[tuple[str, str, str, str], str]
) -> None:
    """The store is made, shared by the workers; its client (boto3's, with its connections) is each process's."""
    app = build_app(s3_settings)
    warmed(app, OWN)
    store = app.extensions["nectar"].store
    assert isinstance(store, S3Store) and store._client == (0, None)


def test_an_s3_store_has_boto3s_models_loaded_without_credentials(
    s3_settings: Settings, bases: dict[tuple[str, str, str, str], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each worker's first S3 client loaded botocore's S3 models: loaded once, in the master, into the default session
    every worker forked from it shares; a container role's credentials are not fetched there (their connection would
    be every worker's), but by each worker's first client."""
    app = build_app(s3_settings)
    with container_role(monkeypatch, tmp_path) as role:
        warmed(app, OWN)
        assert role.requests == 0, "the master fetched credentials"
        read = model_files_read(monkeypatch)
        store = S3Store(s3_settings.bucket)  # what a worker's first status lookup makes
        assert store.boto.head_bucket(Bucket=s3_settings.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert read == [], "a worker's first S3 client read botocore's models again"
    assert role.requests == 1


#: what Flask's test request context imports (``flask.testing``: click's test runner, and pdb with it), which no
#: request of the API needs
TESTING_ONLY = ("flask.testing", "click.testing", "pdb")
#: a fresh interpreter: the app made and warmed as gunicorn's master does (``nectar.gunicorn_conf``), then which of
#: :data:`TESTING_ONLY` it imported
WARMED_ALONE = """
import json, sys
from app import create_app
from api.warm import EXTENSION
app = create_app()
app.extensions[EXTENSION](["127.0.0.1:5000"])
print(json.dumps(sorted(name for name in {names!r} if name in sys.modules)))
"""


def test_warming_imports_nothing_only_tests_use(settings: Settings) -> None:
    """The master warms a request context by werkzeug's environ builder, not Flask's ``test_request_context``, whose
    ``flask.testing`` imports click's test runner and pdb (~0.5 MB in the master and in every API worker)."""
    code = WARMED_ALONE.format(names=TESTING_ONLY)
    env = base_env() | settings_env(settings)
    root = Path(__file__).resolve().parents[2]  # where app.py is
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
