"""Absurd numbers are refused, the same way through the API and ``nectar run`` (issue 17, point 6): an int
beyond its task's ``max_int`` (a 4,000-digit ``rows``), a JSON float standing for an int it has lost digits
of (``1e30``) or a fraction (``1.5``), a float that is NaN or infinite; a task's ``max_int`` raises the cap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.params import MAX_INT
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.helpers.registries import closed_at_end
from tests.nectar.test_cli import nectar

NUMBERS_CHAIN = """
import luigi

from nectar import NectarTask


class CountTask(NectarTask):
    rows = luigi.IntParameter(default=1)
    ratio = luigi.FloatParameter(default=0.5)

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.rows}\\n")


class BigCountTask(CountTask):
    max_int = 10**40
"""
COUNT = "/api/chains/numbers/count_chain/CountTask"
BIG_COUNT = "/api/chains/numbers/count_chain/BigCountTask"
OUT_OF_RANGE = f"out of range: must be between -{MAX_INT} and {MAX_INT} (the task's max_int)"
HUGE = "9" * 4000


@pytest.fixture
def client(settings: Settings, write_chain: Callable[[str, str], Path]) -> FlaskClient:
    write_chain("numbers/count_chain", NUMBERS_CHAIN)
    return build_app(settings).test_client()


def refusal(client: FlaskClient, url: str, **request: Any) -> dict[str, list[str]]:
    answer = client.post(url, **request)
    assert answer.status_code == 422, answer.get_json()
    return dict(answer.get_json()["errors"])


@pytest.mark.parametrize(
    ("request_args", "name", "says"),
    [
        ({"json": {"rows": HUGE}}, "rows", OUT_OF_RANGE),
        ({"query_string": {"rows": HUGE}}, "rows", OUT_OF_RANGE),
        ({"json": {"rows": int(HUGE)}}, "rows", OUT_OF_RANGE),
        ({"json": {"rows": -(2**63)}}, "rows", OUT_OF_RANGE),
        ({"data": '{"rows": 1e30}', "content_type": "application/json"}, "rows", "expected an integer, got 1e+30"),
        ({"json": {"rows": 1.5}}, "rows", "expected an integer, got 1.5"),
        ({"query_string": {"rows": "1e3"}}, "rows", "not a valid int: '1e3'"),
        ({"data": '{"ratio": NaN}', "content_type": "application/json"}, "ratio", "expected a finite number, got NaN"),
        ({"query_string": {"ratio": "inf"}}, "ratio", "expected a finite number, got inf"),
        ({"query_string": {"ratio": "1e999"}}, "ratio", "expected a finite number, got inf"),
    ],
    ids=[
        "4000-digits",
        "4000-digits-query",
        "4000-digit-json-int",
        "below-min",
        "1e30",
        "1.5",
        "1e3",
        "nan",
        "inf",
        "1e999",
    ],
)
def test_an_absurd_number_is_422_naming_the_parameter(
    client: FlaskClient, request_args: dict[str, Any], name: str, says: str
) -> None:
    errors = refusal(client, COUNT, **request_args)
    assert list(errors) == [name] and errors[name][0].startswith(says), errors


def test_a_task_that_raises_the_cap_takes_a_big_value_and_refuses_beyond(client: FlaskClient) -> None:
    accepted = client.post(BIG_COUNT, json={"rows": "9" * 40})
    assert accepted.status_code == 202, accepted.get_json()
    errors = refusal(client, BIG_COUNT, json={"rows": "1" + "0" * 40 + "1"})
    assert errors["rows"] == [f"out of range: must be between -{10**40} and {10**40} (the task's max_int)"]
    errors = refusal(client, BIG_COUNT, data='{"rows": 1e30}', content_type="application/json")
    assert errors["rows"][0].startswith("expected an integer, got 1e+30")  # raised or not, a float loses digits


def test_integral_numbers_within_the_cap_are_taken(client: FlaskClient) -> None:
    forms: list[dict[str, Any]] = [{"json": {"rows": 7}}, {"json": {"rows": 7.0}}, {"query_string": {"rows": "007"}}]
    keys = {client.post(COUNT, **args).get_json()["data"]["key"] for args in forms}
    assert len(keys) == 1, keys
    assert client.post(COUNT, json={"rows": MAX_INT}).status_code == 202


def test_nectar_run_refuses_the_same_numbers_with_the_same_messages(client: FlaskClient, settings: Settings) -> None:
    over_http = refusal(client, COUNT, query_string={"rows": HUGE, "ratio": "nan"})

    result = nectar(settings, "run", "numbers/count_chain/CountTask", "--rows", HUGE, "--ratio", "nan")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"nectar: --{name}: {over_http[name][0]}" for name in ("ratio", "rows")]


def test_the_cli_path_takes_a_big_value_of_a_task_that_raises_the_cap(client: FlaskClient, settings: Settings) -> None:
    """``nectar run`` submits through Nectar.submit, as here (a process of its own is the test above)."""
    submission = closed_at_end(Nectar(settings)).submit("numbers", "count_chain", "BigCountTask", {"rows": "9" * 40})

    assert submission.created and submission.run is not None
    assert submission.run.params["rows"] == "9" * 40
