"""A hard link in the local store to a file outside it is never served (issue 17 point 12).

A symbolic link out of the store is refused by resolving it; a hard link cannot be told from the file
it names, so any regular file with more than one name is refused, through every endpoint that reads
the store: the signed download (by key and by path), the logs, the status.
"""

from __future__ import annotations

import os
from pathlib import Path

import luigi
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from nectar.config import Settings
from nectar.keys import STDOUT_FILE, TargetKey
from nectar.outputs import SIGNED_PATH_PREFIX, Output, status_outputs
from nectar.status import JobStatus
from nectar.stores import get_store
from tests.api.conftest import build_app

KEY = TargetKey("testchains", "hello_luigiworld_chain", "TestS3Task", "0" * 32)
SECRET = b"a secret outside the store\n"
OWN = b"the store's own bytes\n"
READERS = ("files by key", "files by path", "logs", "status")


@pytest.fixture
def api(settings: Settings) -> FlaskClient:
    """A test client of the API on the test's settings (tests/api/conftest.py's, checking every envelope)."""
    return build_app(settings).test_client()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the store (and outside every folder the service serves)."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def read(api: FlaskClient, settings: Settings, reader: str, linked: Path | None) -> TestResponse:
    """Put the file ``reader`` reads in the local store (a hard link to ``linked``, or the store's own
    bytes) and read it through the API: a signed download by key or by path, its log, its status."""
    key = KEY.with_file(STDOUT_FILE) if reader == "logs" else KEY
    path = settings.local_targets_dir / key.path
    path.parent.mkdir(parents=True)
    if linked is not None:
        os.link(linked, path)
    else:
        path.write_bytes(OWN)
    signer = api.application.extensions["nectar_signer"]
    if reader == "files by key":
        return api.get("/api/files", query_string=signer.sign(key.path, 60))
    if reader == "files by path":
        signed = signer.sign(SIGNED_PATH_PREFIX + str(path), 60)
        query = {"path": str(path), "expires": signed["expires"], "signature": signed["signature"]}
        return api.get("/api/files", query_string=query)
    if reader == "logs":
        return api.get("/api/logs", query_string={"chain": key.path, "stream": "stdout"})
    return api.get("/api/chainstatus", query_string={"chain": key.path})


@pytest.mark.parametrize("reader", READERS)
def test_a_hard_link_to_a_file_outside_the_store_is_refused(
    api: FlaskClient, settings: Settings, outside: Path, reader: str
) -> None:
    answer = read(api, settings, reader, linked=outside)

    assert answer.status_code == 400, answer.data
    assert SECRET not in answer.data
    assert "hard link" in answer.get_json()["message"], answer.get_json()
    assert outside.read_bytes() == SECRET  # refused, not removed: the file is someone else's


@pytest.mark.parametrize("reader", READERS)
def test_a_file_of_the_stores_own_is_served(api: FlaskClient, settings: Settings, reader: str) -> None:
    answer = read(api, settings, reader, linked=None)

    assert answer.status_code == 200, answer.data
    if reader == "status":
        assert answer.get_json()["data"]["job_status"] == "DONE"  # and its resource_url answered 200 (EnvelopeClient)
    else:
        assert answer.data == OWN


def test_a_plain_tasks_output_that_is_a_hard_link_is_listed_without_a_url(settings: Settings, outside: Path) -> None:
    """A status hands out no signed URL that would only be refused: the output is listed with the reason."""
    linked, own = settings.local_targets_dir / "plain" / "linked.txt", settings.local_targets_dir / "plain" / "own.txt"
    linked.parent.mkdir(parents=True)
    os.link(outside, linked)
    own.write_text("mine\n")

    class PlainTask(luigi.Task):
        def output(self) -> list[luigi.LocalTarget]:
            return [luigi.LocalTarget(str(linked)), luigi.LocalTarget(str(own))]

    status = JobStatus(KEY, "DONE", params={})
    found = status_outputs(status, PlainTask, get_store(settings), settings)

    assert found == [
        Output(str(linked), note="is a hard link (a file with other names), which the service does not serve"),
        Output(str(own), path=str(own.resolve())),
    ]
