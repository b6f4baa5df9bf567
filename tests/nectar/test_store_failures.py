"""S3 against a real moto server: what a missing bucket answers, and the content type of what is uploaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from nectar.config import Settings
from nectar.errors import StoreUnavailable
from nectar.keys import TargetKey
from nectar.stores import get_store, is_permanent
from nectar.stores.s3 import S3Store

KEY = TargetKey.parse("chains/etl/sales_chain/AggregateSalesTask/0123456789abcdef0123456789abcdef/out.txt")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("out.txt", "text/plain"),
        ("log/stderr.log", "text/plain"),
        ("rows.csv", "text/csv"),
        ("summary.json", "application/json"),
        ("page.html", "application/octet-stream"),
    ],
)
def test_a_presigned_download_has_the_type_the_local_store_serves(
    s3_settings: Settings, tmp_path: Path, filename: str, expected: str
) -> None:
    store = get_store(s3_settings)
    other = TargetKey.parse(KEY.path.replace("0123", "4567"))
    written, copied = KEY.with_file(filename), other.with_file(filename)
    store.write_text(written, "text\n")  # a task's output: luigi's atomic S3 file
    source = tmp_path / "source"
    source.write_text("text\n")
    store.put_file(source, copied)  # a log: copied from the worker's disk

    for key in (written, copied):
        url = store.url(key, expires_in=60)
        assert url is not None, key.path
        answer = requests.get(url, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == expected, (key.path, answer.headers)


def test_a_missing_bucket_is_no_missing_key(s3_settings: Settings, tmp_path: Path) -> None:
    store = S3Store("nobucket")

    def put() -> None:
        source = tmp_path / "log.txt"
        source.write_text("log\n")
        store.put_file(source, KEY.with_file("log/stderr.log"))

    for probe in (lambda: store.exists(KEY), lambda: store.target(KEY).exists(), store.check, put):
        with pytest.raises(StoreUnavailable, match=r"s3://nobucket: .*NoSuchBucket") as raised:
            probe()
        assert is_permanent(raised.value)
        assert raised.value.__cause__ is None and raised.value.__suppress_context__  # the error shows once

    present = get_store(s3_settings)
    assert present.exists(KEY) is False and present.target(KEY).exists() is False
