"""Settings: defaults, then the environment (NECTAR_* and the seed's names), then explicit values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nectar.config import ENV_VARS, GunicornSettings, Settings
from nectar.errors import InvalidSetting
from nectar.registry import RetryPolicy, Run
from nectar.registry.postgres import PostgresRunStore
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.registries import closed_at_end


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


def test_an_attempt_process_takes_up_to_1000_runs_unless_set() -> None:
    """A fresh attempt process costs ~20 ms of CPU (its fork, the pages it copies, its set-up, luigid's new worker):
    spread over 1,000 runs, not 100 (0.2 ms of a trivial run's ~4.6)."""
    assert Settings.from_env({}).runs_per_process == 1000
    assert Settings.from_env({"NECTAR_RUNS_PER_PROCESS": "100"}).runs_per_process == 100


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
    says = "NECTAR_STOP_TIMEOUT must be a number of seconds > 0, at most 1000000000 (digits, at most one point), not "
    with pytest.raises(ValueError, match=f"^{re.escape(says)}'{value}'$"):
        Settings.from_env({"NECTAR_STOP_TIMEOUT": value})


#: every duration (seconds) of the settings, and whether it takes 0 (no spare, no delay, no limit, no copy until the
#: end) or must be above it (a poll, a timeout, a heartbeat of 0 spins or fails at once)
DURATIONS = {
    "NECTAR_WORKER_POLL": False,
    "NECTAR_SPARE_IDLE": True,
    "NECTAR_SCHEDULER_TIMEOUT": False,
    "NECTAR_SCHEDULER_IDLE_TIMEOUT": False,
    "NECTAR_RETRY_DELAY": True,
    "NECTAR_HEARTBEAT": False,
    "NECTAR_LEASE": False,
    "NECTAR_MAX_RUNTIME": True,
    "NECTAR_WAIT_TIMEOUT": True,
    "NECTAR_WAIT_POLL_MAX": False,
    "NECTAR_DRAIN_GRACE": True,
    "NECTAR_STOP_TIMEOUT": False,
    "NECTAR_LOG_SYNC": True,
}


@pytest.mark.parametrize("variable", sorted(DURATIONS))
@pytest.mark.parametrize("value", ["1_0", "1e1", "inf", "nan", "-1", "0x10", "1.5.0", "\u0663", "1000000001", "below"])
def test_a_duration_is_a_plain_decimal_number_of_seconds_from_its_least_naming_its_variable(
    variable: str, value: str
) -> None:
    """``float()`` took ``1_0``, ``1e1``, another script's digits; ``NECTAR_LEASE=nan`` or ``-1`` was taken (no range
    but for four of them); past ~9.2e9 s a lock's or a socket's wait raises OverflowError, at the first wait."""
    zero = DURATIONS[variable]
    value = ("-0.5" if zero else "0") if value == "below" else value
    says = f"{variable} must be a number of seconds {'≥' if zero else '>'} 0, at most 1000000000 (digits, at most "
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}one point\\), not {re.escape(repr(value))}$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("variable", sorted(DURATIONS))
def test_a_duration_is_taken_from_its_least_to_its_most_in_digits_with_one_point(variable: str) -> None:
    field = ENV_VARS[variable]
    least = "0" if DURATIONS[variable] else "0.001"
    for value, seconds in ((least, float(least)), (" 2.5 ", 2.5), (".5", 0.5), ("7.", 7.0), ("1000000000", 1e9)):
        assert getattr(Settings.from_env({variable: value}), field) == seconds


@pytest.mark.parametrize("value", ["0.5", "1e1", "inf", "nan"])
def test_a_retry_backoff_is_a_plain_decimal_number_from_1(value: str) -> None:
    """A run's policy took a backoff below 1 for 1, silently; ``nan`` made every retry's delay nan."""
    says = f"NECTAR_RETRY_BACKOFF must be a number ≥ 1 (digits, at most one point), not {value!r}"
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        Settings.from_env({"NECTAR_RETRY_BACKOFF": value})
    assert Settings.from_env({"NECTAR_RETRY_BACKOFF": "1"}).retry_backoff == 1.0


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
        ("NECTAR_MAX_QUEUE", "abc", "NECTAR_MAX_QUEUE must be a whole number from 1 to 2147483647, not 'abc'"),
        ("NECTAR_URL_EXPIRY", "1.5", "NECTAR_URL_EXPIRY must be a whole number from 1 to 2147483647, not '1.5'"),
        (
            "NECTAR_LEASE",
            "soon",
            "NECTAR_LEASE must be a number of seconds > 0, at most 1000000000 (digits, at most one point), not 'soon'",
        ),
        (
            "NECTAR_DRAIN_GRACE",
            "30s",
            "NECTAR_DRAIN_GRACE must be a number of seconds ≥ 0, at most 1000000000 (digits, at most one point), "
            "not '30s'",
        ),
    ],
)
def test_a_setting_that_is_no_number_is_refused_naming_its_variable(variable: str, value: str, says: str) -> None:
    """Python's own message (``invalid literal for int() with base 10: 'abc'``) named no variable: which of 30?"""
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("value", ["-1", "+5", "5.0", "2147483648"])
def test_a_retry_after_is_digits_alone_as_gunicorns_configuration_reads_it(value: str) -> None:
    """``NECTAR_RETRY_AFTER`` is a ``Retry-After`` header's seconds (digits alone) and gunicorn's keep-alive beside it
    (:class:`nectar.config.GunicornSettings`): one rule and one line for both; ``-1`` was a header no client can
    take, which gunicorn's configuration took for 0."""
    says = f"NECTAR_RETRY_AFTER must be a whole number from 0 to 2147483647, not '{value}'"
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


#: every whole-number variable of the settings, its least value and its most (None: none that is real). Least: 0
#: where it means something (no retry, no memory bound, no parameter taken), 1 where 0 would refuse everything (a queue
#: bound of 0 takes no run) or cannot work. Most: the registry's INTEGER for what it keeps (the queue's count, a run's
#: attempts: retries + 1) and a batch's rows (runs the queue takes); a local URL's expiry stays a unix time the signer
#: takes; a count of processes is ``--workers``'
BOUNDS: dict[str, tuple[int, int | None]] = {
    "NECTAR_URL_EXPIRY": (1, 2**31 - 1),
    "NECTAR_RETRIES": (0, 2**31 - 2),
    "NECTAR_MAX_QUEUE": (1, 2**31 - 1),
    "NECTAR_MAX_BODY": (1, None),
    "NECTAR_MAX_PARAMS": (0, None),
    "NECTAR_MAX_PARAM_LENGTH": (1, None),
    "NECTAR_MAX_BATCH": (1, 2**31 - 1),
    "NECTAR_TASK_WORKERS": (1, 1 << 16),
    "NECTAR_DATABASE_POOL": (1, None),
    "NECTAR_RUNS_PER_PROCESS": (1, None),
    "NECTAR_PROCESS_MAX_RSS_MB": (0, None),
}


def refused_whole(variable: str, value: str, bounds: tuple[int, int | None]) -> str:
    """The line that refuses ``value`` of ``variable``, a whole number within ``bounds``."""
    least, most = bounds
    within = f"of at least {least}" if most is None else f"from {least} to {most}"
    return f"{variable} must be a whole number {within}, not {value!r}"


@pytest.mark.parametrize("variable", sorted(BOUNDS))
@pytest.mark.parametrize("value", ["+5", "-1", "1_000", "5.0", "\u0663", "below", "above"])
def test_a_whole_number_setting_is_digits_alone_from_its_least_to_its_most_as_gunicorns_variables_are(
    variable: str, value: str
) -> None:
    """``NECTAR_MAX_QUEUE=-1`` was taken (``int()``: a sign, ``_``, other scripts' digits) and refused every
    submission; gunicorn's variables and ``NECTAR_RETRY_AFTER`` took digits alone: one rule and one line for all.
    Past its most, a queue bound or a retry count failed at the first submission (SQLite: OverflowError binding it;
    PostgreSQL: an INTEGER out of range), a batch bound at the first batch (its listing's ``islice``)."""
    least, most = BOUNDS[variable]
    if value == "above":
        if most is None:
            return
        value = str(most + 1)
    value = str(least - 1) if value == "below" else value
    with pytest.raises(InvalidSetting, match=f"^{re.escape(refused_whole(variable, value, BOUNDS[variable]))}$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("variable", sorted(BOUNDS))
def test_a_whole_number_setting_is_taken_from_its_least_to_its_most_spaces_around_it_aside(variable: str) -> None:
    field = ENV_VARS[variable]
    least, most = BOUNDS[variable]
    for value in (least, most or 10**30):
        assert getattr(Settings.from_env({variable: str(value)}), field) == value
    assert getattr(Settings.from_env({variable: " 7 "}), field) == 7  # as gunicorn's variables: NECTAR_PORT=" 5001 "


@pytest.mark.parametrize(("env", "most"), [("local", 2**31 - 1), ("prod", 7 * 24 * 3600)])
def test_a_url_expiry_is_at_most_what_the_store_signs(env: str, most: int) -> None:
    """S3 refuses a presigned URL that lives more than a week (SigV4's ``X-Amz-Expires``), at its download: the service
    started and handed every client links S3 refused. The local store's signer takes any expiry whose unix time has
    at most 12 digits."""
    assert Settings.from_env({"ENV": env, "NECTAR_URL_EXPIRY": str(most)}).url_expiry == most
    says = refused_whole("NECTAR_URL_EXPIRY", str(most + 1), (1, most))
    with pytest.raises(InvalidSetting, match=f"^{re.escape(says)}$"):
        Settings.from_env({"ENV": env, "NECTAR_URL_EXPIRY": str(most + 1)})


@pytest.mark.parametrize("registry", ["sqlite", "postgres"])
def test_the_most_queue_bound_and_retries_are_what_either_registry_keeps(
    request: pytest.FixtureRequest, tmp_path: Path, registry: str
) -> None:
    """The queue's most bound and the most retries, as the settings take them, work in a real registry of either
    kind: a run submitted with them is queued and read back with its attempts; one more retry is past PostgreSQL's
    INTEGER, which the most leaves out."""
    settings = Settings.from_env({"NECTAR_MAX_QUEUE": "2147483647", "NECTAR_RETRIES": "2147483646"})
    where = str(request.getfixturevalue("database_url")) if registry == "postgres" else str(tmp_path / "runs.sqlite3")
    store = closed_at_end(PostgresRunStore(where) if registry == "postgres" else SQLiteRunStore(Path(where)))
    key = f"chains/t/c_chain/ATask/{'0' * 32}/out.txt"
    run = Run.new(key, "t", "c_chain", "ATask", {}, "A", RetryPolicy(settings.retries))
    queued, created = store.submit(run, max_pending=settings.max_queue)
    got = store.get(queued.id)
    assert created and got is not None and got.max_attempts == 2**31 - 1
    if registry == "postgres":
        past = Run.new(key + "#2", "t", "c_chain", "ATask", {}, "A", RetryPolicy(settings.retries + 1))
        with pytest.raises(Exception, match="out of range"):
            store.submit(past, max_pending=settings.max_queue)


@pytest.mark.parametrize(("value", "level"), [("warn", "warning"), ("WARN", "warning"), (" Fatal ", "critical")])
def test_an_old_log_level_name_is_its_level_as_pythons_logging_takes_it(value: str, level: str) -> None:
    """Python's logging takes ``WARN`` and ``FATAL``; gunicorn would take them for ``info``, and they were refused:
    an old env file's ``NECTAR_LOG_LEVEL=warn`` keeps its level."""
    assert GunicornSettings({"NECTAR_LOG_LEVEL": value}).log_level == level
