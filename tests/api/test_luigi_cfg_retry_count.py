"""luigi.cfg's ``[scheduler] retry_count`` (a run's attempts when neither its class nor the settings give retries) is
read as luigid reads it (an integer, 0 or less one attempt): one luigid refuses to start on (``2.5``, a text) or the
registry cannot hold is refused as the app is made, naming the file, the section, the key and the rule; one written
into the file after that fails the submission the same way, and no run is queued with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.errors import InvalidSetting

WriteChain = Callable[[str, str], Path]

PLAIN_CHAIN = """
import luigi

from nectar import NectarTask


class PlainTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        raise RuntimeError("fails, to be retried")
"""

RULE = "[scheduler] retry_count must be a whole number from 1 to 2147483647"
URL = "/api/chains/policies/plain_chain/PlainTask"


def configured(settings: Settings, tmp_path: Path, value: str) -> Settings:
    config = tmp_path / "luigi.cfg"
    config.write_text(f"[scheduler]\nretry_delay = -1\nretry_count = {value}\n")
    return settings.replace(luigi_config=config)


def refused(client: FlaskClient, config: Path, value: str) -> None:
    answer = client.post(URL, json={"n": 1})
    assert answer.status_code == 500, answer.get_json()
    assert answer.get_json()["message"] == f"{config} {RULE}, not {value!r}"
    assert client.get("/api/runs").get_json()["data"] == []


#: what luigid refuses to start on (its ``IntParameter``: ``int()``), or the registry cannot hold
REFUSED = [
    "1099511627776",  # 2**40: max_attempts past PostgreSQL's INTEGER
    "2147483648",  # one past it
    "inf",  # int('inf'): ValueError, a 500 with no word of the file
    "2.5",
    "three",
    "",
    "50%",  # configparser's interpolation: InterpolationSyntaxError
]


@pytest.mark.parametrize("value", REFUSED)
def test_a_retry_count_luigi_refuses_is_refused_as_the_app_is_made(
    settings: Settings, tmp_path: Path, client_for: Callable[[Settings], FlaskClient], value: str
) -> None:
    """Before, the app was made, and each submission answered a 500 naming the file."""
    bad = configured(settings, tmp_path, value)

    with pytest.raises(InvalidSetting) as refused_at_start:
        client_for(bad)
    assert str(refused_at_start.value) == f"{bad.luigi_config} {RULE}, not {value!r}"


@pytest.mark.parametrize("value", ["2.5", "three"])
def test_a_retry_count_written_after_the_start_fails_the_submission_naming_the_file(
    settings: Settings,
    tmp_path: Path,
    client_for: Callable[[Settings], FlaskClient],
    write_chain: WriteChain,
    value: str,
) -> None:
    write_chain("policies/plain_chain", PLAIN_CHAIN)
    good = configured(settings, tmp_path, "3")
    client = client_for(good)
    assert good.luigi_config is not None
    good.luigi_config.write_text(f"[scheduler]\nretry_delay = -1\nretry_count = {value}\n")

    refused(client, good.luigi_config, value)


@pytest.mark.parametrize(
    ("value", "retries"),
    [
        ("1", 0),
        ("2147483647", 2147483646),
        ("0", 0),  # luigid disables the task at its first failure: one attempt; before, refused with a 500
        ("-1", 0),
        (" 3", 2),  # int()'s forms, as luigi's IntParameter reads them; before, +4 and 1_000 were refused
        ("+4", 3),
        ("1_000", 999),
    ],
)
def test_a_retry_count_within_the_rule_is_taken(
    settings: Settings,
    tmp_path: Path,
    client_for: Callable[[Settings], FlaskClient],
    write_chain: WriteChain,
    value: str,
    retries: int,
) -> None:
    write_chain("policies/plain_chain", PLAIN_CHAIN)
    client = client_for(configured(settings, tmp_path, value))

    answer = client.post(URL, json={"n": 1})

    assert answer.status_code == 202, answer.get_json()
    (run,) = client.get("/api/runs").get_json()["data"]
    assert run["max_attempts"] == retries + 1, run


@pytest.mark.parametrize("value", ["2147483648", "2147483647"])
def test_on_postgresql_past_its_integer_is_refused_and_its_most_taken(
    settings: Settings,
    tmp_path: Path,
    database_url: str,
    client_for: Callable[[Settings], FlaskClient],
    write_chain: WriteChain,
    value: str,
) -> None:
    """Where the registry is PostgreSQL, whose ``runs.max_attempts`` is an INTEGER (4 bytes): on main 2**31 raised
    psycopg's NumericValueOutOfRange ('integer out of range'), a 500 naming neither the file nor the key."""
    write_chain("policies/plain_chain", PLAIN_CHAIN)
    on_postgresql = configured(settings, tmp_path, value).replace(database_url=database_url)
    assert on_postgresql.luigi_config is not None
    if value == "2147483648":
        with pytest.raises(InvalidSetting) as refused_at_start:
            client_for(on_postgresql)
        assert str(refused_at_start.value) == f"{on_postgresql.luigi_config} {RULE}, not {value!r}"
    else:
        client = client_for(on_postgresql)
        assert client.post(URL, json={"n": 1}).status_code == 202
        (run,) = client.get("/api/runs").get_json()["data"]
        assert run["max_attempts"] == 2147483647, run


@pytest.mark.parametrize(
    ("written", "retries"),
    [
        ("retry_count = ${NECTAR_TEST_ATTEMPTS}", 3),  # luigi's EnvironmentInterpolation: before, refused at start
        ("retry_count = 1${NECTAR_TEST_ATTEMPTS}", 13),
        ("attempts = 5\nretry_count = %(attempts)s", 4),  # its BasicInterpolation, of the same section
        ("retry-count = 2", 1),  # the dashed spelling luigi reads too: before, not seen (no retry count)
    ],
)
def test_a_retry_count_is_read_as_luigi_reads_it(
    settings: Settings,
    tmp_path: Path,
    client_for: Callable[[Settings], FlaskClient],
    write_chain: WriteChain,
    monkeypatch: pytest.MonkeyPatch,
    written: str,
    retries: int,
) -> None:
    """luigi's own reading of the value is the rule (luigid, given this file, takes the same number)."""
    monkeypatch.setenv("NECTAR_TEST_ATTEMPTS", "4")
    write_chain("policies/plain_chain", PLAIN_CHAIN)
    config = tmp_path / "luigi.cfg"
    config.write_text(f"[scheduler]\nretry_delay = -1\n{written}\n")
    client = client_for(settings.replace(luigi_config=config))

    answer = client.post(URL, json={"n": 1})

    assert answer.status_code == 202, answer.get_json()
    (run,) = client.get("/api/runs").get_json()["data"]
    assert run["max_attempts"] == retries + 1, run


def test_a_retry_count_of_a_variable_not_set_is_refused_naming_it(
    settings: Settings, tmp_path: Path, client_for: Callable[[Settings], FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As luigid refuses to start on it (luigi's InterpolationMissingEnvvarError), naming what is missing."""
    monkeypatch.delenv("NECTAR_TEST_UNSET", raising=False)
    bad = configured(settings, tmp_path, "${NECTAR_TEST_UNSET}")

    with pytest.raises(InvalidSetting) as refused_at_start:
        client_for(bad)

    said = f"{bad.luigi_config} [scheduler] retry_count is '${{NECTAR_TEST_UNSET}}': ${{NECTAR_TEST_UNSET}} not set"
    assert str(refused_at_start.value) == f"{said} in the environment"


def test_a_dashed_retry_count_refused_is_named_as_written(
    settings: Settings, tmp_path: Path, client_for: Callable[[Settings], FlaskClient]
) -> None:
    """The key the file has, ``retry-count``, is the one the refusal names (before, ``retry_count``, a key the file
    has not)."""
    config = tmp_path / "luigi.cfg"
    config.write_text("[scheduler]\nretry-count = three\n")

    with pytest.raises(InvalidSetting) as refused_at_start:
        client_for(settings.replace(luigi_config=config))
    assert str(refused_at_start.value) == f"{config} {RULE.replace('retry_count', 'retry-count')}, not 'three'"


def test_a_luigi_cfg_luigi_cannot_parse_is_refused_naming_the_file_and_line(
    settings: Settings, tmp_path: Path, client_for: Callable[[Settings], FlaskClient]
) -> None:
    """A key written twice in a section (luigi's parser, strict, refuses it and luigid does not start): one line
    naming the file, the line and the key. Before, configparser's DuplicateOptionError out of the app's making."""
    config = tmp_path / "luigi.cfg"
    config.write_text("[scheduler]\nretry_count = 2\nretry_delay = -1\nretry_count = 3\n")

    with pytest.raises(InvalidSetting) as refused_at_start:
        client_for(settings.replace(luigi_config=config))
    said = f"{config} cannot be read as luigi reads it: While reading from {str(config)!r} [line  4]: option"
    assert str(refused_at_start.value) == f"{said} 'retry_count' in section 'scheduler' already exists"
