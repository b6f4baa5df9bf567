"""``nectar serve`` starts one API worker unless told otherwise (a machine that runs everything, idle at ~200 MB);
``nectar api``, a machine that serves the API alone, two."""

from __future__ import annotations

import pytest

from nectar.cli import build_parser


@pytest.mark.parametrize(("command", "workers"), [("serve", "1"), ("api", "2")])
def test_the_api_workers_default_per_command(command: str, workers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NECTAR_API_WORKERS", raising=False)
    assert build_parser().parse_args([command]).api_workers == workers


@pytest.mark.parametrize("command", ["serve", "api"])
def test_nectar_api_workers_and_the_flag_choose_the_count(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NECTAR_API_WORKERS", "3")
    assert build_parser().parse_args([command]).api_workers == "3"
    assert build_parser().parse_args([command, "--api-workers", "4"]).api_workers == "4"
