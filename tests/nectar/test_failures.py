"""Failures and cancels as a user meets them, with real ``nectar worker`` processes and ``nectar run``: the
error says what failed, a failure no retry cures is not retried, and each is told once, without noise."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness import lifeline_env
from nectar.attempt import process_name
from nectar.config import Settings
from nectar.executor import run_in_foreground
from nectar.keys import STDERR_FILE, STDOUT_FILE, TargetKey
from nectar.registry import RunFilter, RunState
from nectar.service import Nectar
from tests.conftest import NECTAR, settings_env, wait_until
from tests.helpers.registries import closed_at_end

StartWorker = Callable[..., subprocess.Popen[bytes]]
WriteChain = Callable[[str, str], Path]
TRACEBACK = "Traceback (most recent call last)"

BOOM_CHAIN = """from nectar import NectarTask


class BoomTask(NectarTask):
    def run(self):
        print("about to fail")
        raise ValueError("boom")
"""

MIXED_CHAIN = """from nectar import NectarLocalTask, NectarS3Task


class UpstreamTask(NectarS3Task):
    def run(self):
        with self.output().open("w") as out:
            out.write("up\\n")


class ReportTask(NectarLocalTask):
    def requires(self):
        return UpstreamTask()

    def run(self):
        with self.output().open("w") as out:
            out.write("report\\n")
"""

WORKING_CHAIN = """import time
from pathlib import Path

from nectar import NectarTask


class WorkingTask(NectarTask):
    def run(self):
        print("working", flush=True)
        Path({flag!r}).write_text("started")
        time.sleep(120)
"""


def ended(nectar: Nectar, run_id: str) -> None:
    wait_until(lambda: not nectar.run(run_id).state.active, timeout=60)


def worker_log(tmp_path: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(tmp_path.glob("worker-*.log")))


def nectar_cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), **lifeline_env()}  # dies with this process (harness/lifeline.py)
    return subprocess.run([*NECTAR, *argv], env=env, capture_output=True, text=True, timeout=120)


def test_a_failed_task_is_told_once_by_the_worker(
    settings: Settings, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    write_chain("cap/boom_chain", BOOM_CHAIN)
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("cap", "boom_chain", "BoomTask", {})
    assert submission.run is not None
    start_worker(settings, workers=1)

    ended(nectar, submission.run.id)

    wait_until(lambda: "attempt 1 ended" in worker_log(tmp_path))
    log = worker_log(tmp_path)
    assert log.count(TRACEBACK) == 1 and log.count("ValueError: boom") == 1, log
    stderr = nectar.store.read_text(submission.key.with_file(STDERR_FILE))
    assert stderr.count(TRACEBACK) == 1 and "ValueError: boom" in stderr  # the task's own log has it too


def test_nectar_run_logs_at_luigi_cfgs_level_and_points_only_at_files_that_exist(
    settings: Settings, write_chain: WriteChain
) -> None:
    write_chain("cap/boom_chain", BOOM_CHAIN)

    result = nectar_cli(settings, "run", "cap/boom_chain/BoomTask")

    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith(("DEBUG:", "INFO:"))], result.stderr  # luigi.cfg: WARNING
    assert result.stderr.count(TRACEBACK) == 1, result.stderr
    printed = dict(line.split(":", 1) for line in result.stdout.splitlines() if not line.startswith(" "))
    assert printed["job_status"].strip() == "FAILED" and "location" not in printed, result.stdout
    assert Path(printed["logs"].strip()).read_text().count("ValueError: boom") == 1


def test_a_run_of_a_chain_that_no_longer_imports_fails_once_saying_where(
    settings: Settings, write_chain: WriteChain
) -> None:
    write_chain("cap/fragile_chain", "from nectar import NectarTask\n\n\nclass FragileTask(NectarTask):\n    pass\n")
    nectar = closed_at_end(Nectar(settings.replace(retries=3)))
    submission = nectar.submit("cap", "fragile_chain", "FragileTask", {})
    assert submission.run is not None and submission.run.max_attempts == 4
    write_chain("cap/fragile_chain", "from nectar import NectarTask\n\n\nclass FragileTask(NectarTask)\n    pass\n")

    run_in_foreground(settings, nectar.runs, submission.run.id, process_name())

    run = nectar.run(submission.run.id)
    assert (run.state, run.attempt, run.failed_step) == (RunState.FAILED, 1, "FragileTask")
    assert (
        run.error == "cannot load cap/fragile_chain/FragileTask: SyntaxError: expected ':' (fragile_chain.py, line 4)"
    )


def test_a_cancelled_step_ends_cancelled_at_once_keeps_its_logs_and_leaves_no_traceback(
    settings: Settings, write_chain: WriteChain, start_worker: StartWorker, tmp_path: Path
) -> None:
    flag = tmp_path / "started.flag"
    write_chain("cap/working_chain", WORKING_CHAIN.format(flag=str(flag)))
    nectar = closed_at_end(Nectar(settings))
    submission = nectar.submit("cap", "working_chain", "WorkingTask", {})
    assert submission.run is not None
    start_worker(settings, workers=1)
    wait_until(flag.exists, timeout=60)

    nectar.cancel(submission.run.id)

    assert [(s.task, s.state) for s in nectar.runs.steps(submission.run.id)] == [("WorkingTask", "CANCELLED")]
    wait_until(lambda: "attempt 1 ended" in worker_log(tmp_path), timeout=60)
    key: TargetKey = submission.key
    assert nectar.store.read_text(key.with_file(STDOUT_FILE)) == "working\n"
    assert "interrupted: the run was cancelled" in nectar.store.read_text(key.with_file(STDERR_FILE))
    log = worker_log(tmp_path)
    assert TRACEBACK not in log and "could not save the logs" not in log, log
    assert [(s.task, s.state) for s in nectar.runs.steps(submission.run.id)] == [("WorkingTask", "CANCELLED")]
    status = nectar_cli(settings, "status", key.path)
    assert status.returncode == 1 and "job_status: CANCELLED" in status.stdout, status.stdout + status.stderr
    assert "location:" not in status.stdout and "logs:" not in status.stdout, status.stdout


def test_nectar_run_of_a_step_whose_bucket_is_missing_names_it_once_and_points_at_no_log(
    settings: Settings, s3_env: dict[str, str], write_chain: WriteChain
) -> None:
    write_chain("cap/mixed_chain", MIXED_CHAIN)  # the task asked for is local; the step it needs is in S3
    qa = settings.replace(env="qa", project_bucket="nobucket", retries=2)  # the moto server has no qa.nobucket

    result = nectar_cli(qa, "run", "cap/mixed_chain/ReportTask")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("NoSuchBucket") == 1, result.stderr  # one attempt, told once
    printed = {k: v.strip() for k, v in (line.split(":", 1) for line in result.stdout.splitlines() if line[0] != " ")}
    assert printed["failed"].startswith("UpstreamTask: complete() failed: StoreUnavailable: S3 store s3://qa.nobucket")
    assert "NoSuchBucket" in printed["failed"] and "missing" not in printed["failed"], result.stdout
    assert "logs" not in printed and "location" not in printed, result.stdout
    run = closed_at_end(Nectar(qa)).runs.find(RunFilter(chain="mixed_chain"))[0][0]
    assert (run.state, run.attempt, run.max_attempts) == (RunState.FAILED, 1, 3)
