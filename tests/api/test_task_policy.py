"""A task class's own retry policy (``retries``, ``retry_delay``, ``retry_backoff``, luigi's ``retry_count``) is read
by the rule of the setting it stands for: a value the settings refuse is refused at submission, a 422 naming the
class, the attribute and the rule, and no run is queued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings

WriteChain = Callable[[str, str], Path]

POLICY_CHAIN = """
import luigi

from nectar import NectarTask


class PolicyTask(NectarTask):
    n = luigi.IntParameter()
    {attribute} = {value}

    def run(self):
        raise RuntimeError("fails, to be retried")
"""

WHOLE = "must be a whole number from 0 to 2147483646"
SECONDS = "must be a number of seconds ≥ 0, at most 1000000000"
FACTOR = "must be a number ≥ 1"


@pytest.mark.parametrize(
    ("attribute", "value", "rule"),
    [
        ("retries", "2**40", WHOLE),  # max_attempts past PostgreSQL's INTEGER
        ("retries", "2**63", WHOLE),  # past SQLite's 8 bytes: OverflowError, a 500
        ("retries", "float('inf')", WHOLE),  # int(inf): OverflowError, a 500
        ("retries", "float('nan')", WHOLE),  # int(nan): ValueError, a 500
        ("retries", "-1", WHOLE),  # taken for 0
        ("retries", "2.5", WHOLE),  # taken for 2
        ("retry_delay", "float('inf')", SECONDS),  # a failed attempt's retry due at inf: PENDING for ever
        ("retry_delay", "float('nan')", SECONDS),  # taken for 0
        ("retry_delay", "-5", SECONDS),  # taken for 0
        ("retry_delay", "10**10", SECONDS),  # past the durations' most
        ("retry_backoff", "0.5", FACTOR),  # taken for 1
        ("retry_backoff", "float('inf')", FACTOR),
        ("retry_backoff", "float('nan')", FACTOR),
        ("retry_count", "2**40", "must be a whole number from 1 to 2147483647"),  # luigi's attempts: max_attempts
        ("retry_count", "float('inf')", "must be a whole number from 1 to 2147483647"),  # luigi: retried for ever
        ("retry_count", "float('nan')", "must be a whole number from 1 to 2147483647"),  # luigi: never disabled
        ("retry_count", "'3'", "must be a whole number from 1 to 2147483647"),  # luigid: a TypeError at its failure
    ],
)
def test_a_policy_the_settings_refuse_is_refused_naming_the_class(
    client: FlaskClient, write_chain: WriteChain, attribute: str, value: str, rule: str
) -> None:
    write_chain("policies/policy_chain", POLICY_CHAIN.format(attribute=attribute, value=value))

    answer = client.post("/api/chains/policies/policy_chain/PolicyTask", json={"n": 1})

    assert answer.status_code == 422, answer.get_json()
    message = answer.get_json()["message"]
    assert f"task class policies/policy_chain/PolicyTask's {attribute} {rule}" in message, message
    assert client.get("/api/runs").get_json()["data"] == []


@pytest.mark.parametrize(
    ("attribute", "value", "attempts"),
    [
        ("retries", "0", 1),
        ("retries", "2**31 - 2", 2**31 - 1),
        ("retries", "property(lambda self: 1)", 2),  # read on the task, as luigi reads its own; before: a 422
        ("retry_delay", "0", 4),  # the settings' 3 retries
        ("retry_delay", "0.25", 4),
        ("retry_backoff", "1", 4),
        ("retry_count", "0", 1),  # luigi: disabled at the first failure; before: ignored (the settings' retries)
        ("retry_count", "-1", 1),
        ("retry_count", "2.5", 3),  # luigi: disabled at the third
        ("retry_count", "True", 1),
        ("retry_count", "2", 2),
    ],
)
def test_a_policy_within_the_rules_is_taken(
    settings: Settings,
    client_for: Callable[[Settings], FlaskClient],
    write_chain: WriteChain,
    attribute: str,
    value: str,
    attempts: int,
) -> None:
    client = client_for(settings.replace(retries=3))
    write_chain("policies/policy_chain", POLICY_CHAIN.format(attribute=attribute, value=value))

    answer = client.post("/api/chains/policies/policy_chain/PolicyTask", json={"n": 1})

    assert answer.status_code == 202, answer.get_json()
    assert [run["max_attempts"] for run in client.get("/api/runs").get_json()["data"]] == [attempts]


def test_retries_past_postgresqls_integer_are_refused_on_postgresql(
    settings: Settings, database_url: str, client_for: Callable[[Settings], FlaskClient], write_chain: WriteChain
) -> None:
    """Where the registry is PostgreSQL, whose ``runs.max_attempts`` is an INTEGER (4 bytes)."""
    client = client_for(settings.replace(database_url=database_url))
    write_chain("policies/policy_chain", POLICY_CHAIN.format(attribute="retries", value="2**40"))

    answer = client.post("/api/chains/policies/policy_chain/PolicyTask", json={"n": 1})

    assert answer.status_code == 422, answer.get_json()
    assert f"task class policies/policy_chain/PolicyTask's retries {WHOLE}" in answer.get_json()["message"]
    assert client.get("/api/runs").get_json()["data"] == []
