"""A worker loads boto3's S3 models once, so that the attempts it forks make their S3 clients without reading them."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.loaders import JSONFileLoader

from nectar.config import Settings
from nectar.executor import Executor
from nectar.stores.s3 import S3Store


def test_an_attempt_makes_its_s3_client_from_the_models_its_worker_loaded(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # as in a worker process just started
    Executor(s3_settings).warm()  # as before its first spare is forked
    read: list[str] = []
    load_file = JSONFileLoader.load_file

    def recorded(self: JSONFileLoader, file_path: str) -> Any:
        read.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", recorded)

    store = S3Store(s3_settings.bucket)  # what an attempt's process, forked from the worker, makes

    assert store.boto.head_bucket(Bucket=s3_settings.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert read == [], "the attempt read botocore's models again"
