"""NECTAR_API_MAX_REQUESTS: how many requests a gunicorn worker of the API answers before a fresh one replaces it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import nectar.gunicorn_conf


@pytest.fixture
def load_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The gunicorn configuration, read again under the environment the test sets (and again as it was after)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # no folder of its own made for the metrics
    yield nectar.gunicorn_conf
    monkeypatch.undo()
    importlib.reload(nectar.gunicorn_conf)


@pytest.mark.parametrize(("value", "max_requests", "jitter"), [(None, 20000, 2000), ("500", 500, 50), ("0", 0, 0)])
def test_the_recycle_bound_comes_from_the_environment(
    load_conf: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str | None, max_requests: int, jitter: int
) -> None:
    if value is None:
        monkeypatch.delenv("NECTAR_API_MAX_REQUESTS", raising=False)
    else:
        monkeypatch.setenv("NECTAR_API_MAX_REQUESTS", value)
    conf = importlib.reload(load_conf)
    assert (conf.max_requests, conf.max_requests_jitter) == (max_requests, jitter)
