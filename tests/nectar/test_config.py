"""Settings: defaults, then the environment (NECTAR_* and the seed's names), then explicit values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nectar.config import ENV_VARS, GunicornSettings, Settings
from nectar.errors import InvalidSetting


def test_defaults_environment_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}) == Settings(
        chains_dir=tmp_path / "chains", local_targets_dir=tmp_path / "local_targets", data_dir=tmp_path / "nectar_data"
    )
    environ = {
        "ENV": "prod",
        "PROJECT_BUCKET": "nectar",
        "NECTAR_CHAINS_DIR": "pipelines",
        "NECTAR_URL_EXPIRY": "60",
        "NECTAR_SCHEDULER_URL": "http://luigid:8082/",
        "NECTAR_WORKER_POLL": "",
    }
    settings = Settings.from_env(environ, url_expiry=30, data_dir=None)

    assert (settings.env, settings.store_kind, settings.bucket) == ("prod", "s3", "prod.nectar")
    assert settings.chains_dir == tmp_path / "pipelines"
    assert settings.scheduler_url == "http://luigid:8082"
    assert settings.url_expiry == 30 and settings.worker_poll_interval == 0.05
    assert settings.data_dir == tmp_path / "nectar_data"
    assert settings.replace(s3_bucket="explicit").bucket == "explicit"
    assert Settings.from_env({"ENV": "local"}).store_kind == "local"


@pytest.mark.parametrize("url", ["luigid:8082", "localhost", "http+unix://%2Ftmp%2Fluigid.sock"])
def test_a_scheduler_url_that_is_not_http_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ValueError, match="NECTAR_SCHEDULER_URL must be an http:// or https:// URL"):
        Settings.from_env({"NECTAR_SCHEDULER_URL": url})


def test_the_maximum_runtime_is_a_day_unless_set_and_zero_means_no_limit() -> None:
    assert Settings.from_env({}).max_runtime == 86400.0
    assert Settings.from_env({"NECTAR_MAX_RUNTIME": "0"}).max_runtime == 0.0


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_a_maximum_runtime_that_is_no_number_of_seconds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="NECTAR_MAX_RUNTIME must be a number of seconds ≥ 0"):
        Settings.from_env({"NECTAR_MAX_RUNTIME": value})


def test_luigid_closes_an_idle_framed_connection_after_an_hour_unless_set() -> None:
    assert Settings.from_env({}).scheduler_idle_timeout == 3600.0
    assert Settings.from_env({"NECTAR_SCHEDULER_IDLE_TIMEOUT": "0.5"}).scheduler_idle_timeout == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_an_idle_timeout_that_is_no_number_of_seconds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="NECTAR_SCHEDULER_IDLE_TIMEOUT must be a number of seconds > 0"):
        Settings.from_env({"NECTAR_SCHEDULER_IDLE_TIMEOUT": value})


def test_serve_gives_a_stopping_part_20_seconds_unless_set() -> None:
    assert Settings.from_env({}).stop_timeout == 20.0
    assert Settings.from_env({"NECTAR_STOP_TIMEOUT": "600"}).stop_timeout == 600.0


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
def test_a_stop_timeout_that_is_no_number_of_seconds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=f"NECTAR_STOP_TIMEOUT must be a number of seconds > 0, not '{value}'"):
        Settings.from_env({"NECTAR_STOP_TIMEOUT": value})


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("NECTAR_RUNS_PER_PROCESS", "0", "NECTAR_RUNS_PER_PROCESS must be a whole number of at least 1, not '0'"),
        ("NECTAR_PROCESS_MAX_RSS_MB", "-1", "NECTAR_PROCESS_MAX_RSS_MB must be a whole number of at least 0, not '-1'"),
    ],
)
def test_a_process_reuse_bound_out_of_range_is_refused_naming_the_variable(
    variable: str, value: str, says: str
) -> None:
    """A negative RSS bound would end every process after its first run (its size is always above it), silently."""
    with pytest.raises(ValueError, match=says):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("NECTAR_MAX_QUEUE", "abc", "NECTAR_MAX_QUEUE must be a whole number of at least 1, not 'abc'"),
        ("NECTAR_URL_EXPIRY", "1.5", "NECTAR_URL_EXPIRY must be a whole number of at least 1, not '1.5'"),
        ("NECTAR_LEASE", "soon", "NECTAR_LEASE must be a number, not 'soon'"),
        ("NECTAR_DRAIN_GRACE", "30s", "NECTAR_DRAIN_GRACE must be a number, not '30s'"),
    ],
)
def test_a_setting_that_is_no_number_is_refused_naming_its_variable(variable: str, value: str, says: str) -> None:
    """Python's own message (``invalid literal for int() with base 10: 'abc'``) named no variable: which of 30?"""
    with pytest.raises(InvalidSetting, match=f"^{says}$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("value", ["-1", "+5", "5.0"])
def test_a_retry_after_is_digits_alone_as_gunicorns_configuration_reads_it(value: str) -> None:
    """``NECTAR_RETRY_AFTER`` is a ``Retry-After`` header's seconds (digits alone) and gunicorn's keep-alive beside it
    (:class:`nectar.config.GunicornSettings`): one rule and one line for both; ``-1`` was a header no client can
    take, which gunicorn's configuration took for 0."""
    says = f"NECTAR_RETRY_AFTER must be a whole number of at least 0, not '{value}'"
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        Settings.from_env({"NECTAR_RETRY_AFTER": value})
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        GunicornSettings({"NECTAR_RETRY_AFTER": value})
    assert Settings.from_env({"NECTAR_RETRY_AFTER": " 7 "}).retry_after == 7


@pytest.mark.parametrize("blank", [" ", "\t"])
def test_a_variable_of_spaces_alone_is_its_default_for_the_settings_as_for_gunicorn(blank: str) -> None:
    """``NECTAR_RETRY_AFTER= `` (a space left in an env file) is read by the app's settings and by gunicorn's
    configuration (its keep-alive): both took it for unset but the settings, which refused it, as they refused a
    whole number or a folder of spaces alone."""
    defaults = Settings.from_env({})
    spaces = Settings.from_env({"NECTAR_RETRY_AFTER": blank, "NECTAR_MAX_QUEUE": blank, "NECTAR_CHAINS_DIR": blank})
    assert (spaces.retry_after, spaces.max_queue, spaces.chains_dir) == (
        defaults.retry_after,
        defaults.max_queue,
        defaults.chains_dir,
    )
    assert GunicornSettings({"NECTAR_RETRY_AFTER": blank}).retry_after == spaces.retry_after


def test_every_refused_setting_is_a_nectar_error_and_still_a_value_error() -> None:
    with pytest.raises(InvalidSetting) as refused:
        Settings.from_env({"NECTAR_SCHEDULER_URL": "luigid:8082"})
    assert isinstance(refused.value, ValueError)


#: every whole-number variable of the settings and its least value: 0 where it means something (no retry, no memory
#: bound, no parameter taken), 1 where 0 would refuse everything (a queue bound of 0 takes no run) or cannot work
LEAST = {
    "NECTAR_URL_EXPIRY": 1,
    "NECTAR_RETRIES": 0,
    "NECTAR_MAX_QUEUE": 1,
    "NECTAR_MAX_BODY": 1,
    "NECTAR_MAX_PARAMS": 0,
    "NECTAR_MAX_PARAM_LENGTH": 1,
    "NECTAR_MAX_BATCH": 1,
    "NECTAR_TASK_WORKERS": 1,
    "NECTAR_DATABASE_POOL": 1,
    "NECTAR_RUNS_PER_PROCESS": 1,
    "NECTAR_PROCESS_MAX_RSS_MB": 0,
}


@pytest.mark.parametrize("variable", sorted(LEAST))
@pytest.mark.parametrize("value", ["+5", "-1", "1_000", "5.0", "\u0663", "below"])
def test_a_whole_number_setting_is_digits_alone_from_its_least_as_gunicorns_variables_are(
    variable: str, value: str
) -> None:
    """``NECTAR_MAX_QUEUE=-1`` was taken (``int()``: a sign, ``_``, other scripts' digits) and refused every
    submission; gunicorn's variables and ``NECTAR_RETRY_AFTER`` took digits alone: one rule and one line for all."""
    value = str(LEAST[variable] - 1) if value == "below" else value
    says = f"{variable} must be a whole number of at least {LEAST[variable]}, not '{value}'"
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("variable", sorted(LEAST))
def test_a_whole_number_setting_is_taken_from_its_least_spaces_around_it_aside(variable: str) -> None:
    field = ENV_VARS[variable]
    assert getattr(Settings.from_env({variable: str(LEAST[variable])}), field) == LEAST[variable]
    assert getattr(Settings.from_env({variable: " 7 "}), field) == 7  # as gunicorn's variables: NECTAR_PORT=" 5001 "


@pytest.mark.parametrize(("value", "level"), [("warn", "warning"), ("WARN", "warning"), (" Fatal ", "critical")])
def test_an_old_log_level_name_is_its_level_as_pythons_logging_takes_it(value: str, level: str) -> None:
    """Python's logging takes ``WARN`` and ``FATAL``; gunicorn would take them for ``info``, and they were refused:
    an old env file's ``NECTAR_LOG_LEVEL=warn`` keeps its level."""
    assert GunicornSettings({"NECTAR_LOG_LEVEL": value}).log_level == level
