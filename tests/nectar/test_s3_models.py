"""A worker loads boto3's S3 models once, so that the attempts it forks make their S3 clients without reading them,
and without resolving credentials, which each attempt's client resolves itself."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from nectar.config import Settings
from nectar.executor import Executor
from nectar.stores.s3 import S3Store, load_s3_models
from tests.helpers.credentials_endpoint import (
    ACCESS_KEY_ID,
    CredentialsEndpoint,
    container_role,
    model_files_read,
    socket_inodes,
)
from tests.helpers.registries import closed_at_end


def test_an_attempt_makes_its_s3_client_from_the_models_its_worker_loaded(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # as in a worker process just started
    closed_at_end(Executor(s3_settings)).warm()  # as before its first spare is forked
    read = model_files_read(monkeypatch)

    store = S3Store(s3_settings.bucket)  # what an attempt's process, forked from the worker, makes

    assert store.boto.head_bucket(Bucket=s3_settings.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert read == [], "the attempt read botocore's models again"


@pytest.fixture
def role(s3_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CredentialsEndpoint]:
    """boto3 pointed at moto's server (the bucket made), its credentials from a container role's endpoint alone."""
    with container_role(monkeypatch, tmp_path) as endpoint:
        yield endpoint


def test_loading_the_models_resolves_no_credentials_and_keeps_no_socket(role: CredentialsEndpoint) -> None:
    """A worker loads them before it forks its attempts, gunicorn's master before it forks the API's workers: a
    credentials request made then leaves a connection botocore keeps, which every forked process would share."""
    before = socket_inodes()
    load_s3_models()
    assert (role.requests, role.connections) == (0, 0), "credentials were fetched"
    assert socket_inodes() - before == set(), "a socket was left open"
    assert boto3.DEFAULT_SESSION is not None  # where the forked processes' clients find the models


def test_a_process_forked_after_fetches_its_own_credentials_and_uses_them(
    s3_settings: Settings, role: CredentialsEndpoint
) -> None:
    load_s3_models()
    fetched_before = role.requests
    read, written = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: an attempt's process, making its client from the models its worker loaded
        code = 1
        try:
            os.close(read)
            store = S3Store(s3_settings.bucket)
            answer = store.boto.head_bucket(Bucket=s3_settings.bucket)["ResponseMetadata"]["HTTPStatusCode"]
            key = boto3.DEFAULT_SESSION.get_credentials().access_key  # those the client was made with
            os.write(written, f"{answer} {key}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(written)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert said == f"200 {ACCESS_KEY_ID}", "the forked process did not use the endpoint's credentials"
    assert role.requests - fetched_before == 1, "the forked process did not fetch its credentials itself"
