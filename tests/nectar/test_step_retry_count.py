"""A failed step's own ``retry_count`` ends its run where luigid disables the step, by the rule a run's task's is read
by (:mod:`nectar.retry_count`): 0, a negative, ``True`` and ``False`` one attempt, 2.5 three. Before, the step's
0, -1, 2.5 and ``True`` were ignored: the run spent another attempt, which met the step disabled by luigid. And a
luigi.cfg whose ``[scheduler] retry_count`` luigid refuses to start on is refused by ``nectar serve`` and ``nectar
api`` in one line, before anything starts (before, the API started and each submission answered a 500)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import luigi.scheduler
import pytest

from harness import REPO, free_port, lifeline_env
from nectar.outcomes import retry_allowed
from tests.nectar.test_retry_count import LUIGIS_PATIENCE, counting, disabled_after


@pytest.mark.parametrize("by_property", [False, True])
@pytest.mark.parametrize("value", [0, -1, -2.5, 1, 2, 2.5, 3.0, 0.1, True, False, 7])
def test_a_failed_steps_retry_count_ends_its_run_where_luigid_disables_it(value: object, by_property: bool) -> None:
    failures = disabled_after(value)
    assert failures is not None
    step = counting(value, by_property)

    ended = [attempt for attempt in range(1, failures + 3) if retry_allowed(step, attempt) is not None]

    assert ended == list(range(failures, failures + 3)), f"luigid disables it at failure {failures}"
    assert retry_allowed(step, failures) == value  # what the run's error names


@pytest.mark.parametrize("value", [math.inf, math.nan, "3", None])
def test_a_step_luigid_never_disables_ends_no_run(value: object) -> None:
    if isinstance(value, float):  # never reached: luigi retries it for ever
        assert disabled_after(value) is None
    assert all(retry_allowed(counting(value), attempt) is None for attempt in range(1, LUIGIS_PATIENCE))
    assert retry_allowed(None, 1) is None  # no step known (the run's own output missing)


@pytest.mark.parametrize("configured", ["0", "-1", "1", "3"])
def test_a_step_that_sets_none_ends_its_run_where_luigi_cfgs_retry_count_disables_it(
    tmp_path: Path, configured: str
) -> None:
    """Where the step sets no ``retry_count``, luigid gives it its own ``[scheduler] retry_count`` (the project's
    luigi.cfg, which ``serve`` hands luigid and its workers): a run whose task's ``retries`` allow more attempts ends
    where luigid disables the step. Before, it spent another attempt, which met the step disabled."""
    scheduler = luigi.scheduler.Scheduler(retry_count=int(configured), disable_window=3600, disable_hard_timeout=10**9)
    policy = {"retry_count": None, "disable_hard_timeout": None, "disable_window": None}  # the step's: none set
    scheduler.add_task(worker="w", task_id="T", status="PENDING", retry_policy_dict=policy)
    failures = next(
        n
        for n in range(1, LUIGIS_PATIENCE)
        if scheduler.add_task(worker="w", task_id="T", status="FAILED", retry_policy_dict=policy) is None
        and scheduler.task_list("DISABLED", "")
    )
    config = tmp_path / "luigi.cfg"
    config.write_text(f"[scheduler]\nretry_count = {configured}\n")
    step = counting(None)

    ended = [attempt for attempt in range(1, failures + 3) if retry_allowed(step, attempt, config) is not None]

    assert ended == list(range(failures, failures + 3)), f"luigid disables it at failure {failures}"
    assert all(retry_allowed(step, attempt) is None for attempt in range(1, failures + 3))  # no luigi.cfg: never


@pytest.mark.parametrize("command", ["serve", "api"])
@pytest.mark.parametrize("value", ["2.5", "three"])
def test_a_luigi_cfg_retry_count_luigid_refuses_stops_the_start_in_one_line(
    tmp_path: Path, command: str, value: str
) -> None:
    config = tmp_path / "luigi.cfg"
    config.write_text(f"[scheduler]\nretry_count = {value}\n")

    rule = f"{config} [scheduler] retry_count must be a whole number from 1 to 2147483647, not {value!r}"
    assert start_refused(tmp_path, command, config) == f"nectar: {rule}\n"


def start_refused(tmp_path: Path, command: str, config: Path, **env: str) -> str:
    """What ``nectar <command>`` (serve, api, scheduler) with the luigi.cfg ``config`` and the environment ``env``
    said on stderr as it exited 2, refusing to start (the test fails where it did otherwise)."""
    (tmp_path / "chains").mkdir(exist_ok=True)
    env = {**os.environ, **lifeline_env(), "NECTAR_LUIGI_CONFIG": str(config), "PYTHONPATH": str(REPO), **env}
    env["NECTAR_DATA_DIR"] = str(tmp_path / "data")
    argv = [sys.executable, "-m", "nectar.cli", command]
    argv += ["--port", str(free_port())] if command != "scheduler" else []
    argv += ["--scheduler-port", str(free_port())] if command != "api" else []

    # a start not refused serves on: the deadline only fails that (the test's failure before the change)
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    return done.stderr
