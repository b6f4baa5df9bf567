"""``nectar run`` takes luigi's everyday command line: ``python -m luigi --module m MyTask --workers 2 --MyTask-x 3``.
luigi's ``--workers N`` runs up to N independent steps at once; its global form of a parameter, ``--<Task>-<param>``,
gives the task run its value (and, for another task, that task's, which ``nectar run`` refuses, naming the flag and
why: a run is known by its own task's parameters alone)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import lifeline_env
from nectar.config import Settings
from tests.nectar.test_cli import nectar

#: two independent steps that each wait for the other to have started (only steps run at once both end), under a
#: wrapper with a parameter of its own; the folder both write to named by ``COMPAT67_OUT``
CHAIN = """
import os
import time

import luigi


def out(name):
    return os.path.join(os.environ["COMPAT67_OUT"], name)


class MeetTask(luigi.Task):
    side = luigi.Parameter()
    x = luigi.IntParameter()

    def run(self):
        open(out(f"started-{self.side}-{self.x}"), "w").close()
        other = out(f"started-{'b' if self.side == 'a' else 'a'}-{self.x}")
        deadline = time.monotonic() + 60  # one step at a time: the first never meets the other, and fails
        while not os.path.exists(other):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{other} not started while this step ran")
            time.sleep(0.01)
        with self.output().open("w") as made:
            made.write("met")

    def output(self):
        return luigi.LocalTarget(out(f"met-{self.side}-{self.x}"))


class BothTask(luigi.WrapperTask):
    x = luigi.IntParameter()

    def requires(self):
        return [MeetTask(side="a", x=self.x), MeetTask(side="b", x=self.x)]
"""


def test_nectar_run_takes_luigis_workers_and_global_parameter_form(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """``python -m luigi --module <chain> BothTask --workers 2 --BothTask-x 3`` (checked first) makes both
    ``met-*-3``; ``nectar run`` with the same words makes them, exit 0. Failed before round 67 (compat): exit 2,
    "nectar: --BothTask_x: unknown parameter" and "--workers: unknown parameter", nothing made."""
    chain = write_chain("compat67/meet_chain", CHAIN)
    under_luigi = tmp_path / "under_luigi"
    under_luigi.mkdir()
    given = ["--workers", "2", "--BothTask-x", "3", "--local-scheduler", "--no-lock"]
    env = {**os.environ, "COMPAT67_OUT": str(under_luigi), "PYTHONPATH": str(chain.parent), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "BothTask", *given]
    said = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    assert sorted(os.listdir(under_luigi)) == ["met-a-3", "met-b-3", "started-a-3", "started-b-3"], said.stderr
    out = tmp_path / "out"
    out.mkdir()
    result = nectar(settings, "run", "compat67/meet_chain/BothTask", *given, COMPAT67_OUT=str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(out)) == ["met-a-3", "met-b-3", "started-a-3", "started-b-3"], result.stdout


def test_nectar_run_refuses_another_tasks_parameter_and_a_bad_workers_naming_each(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """``--MeetTask-x 3`` beside ``BothTask``'s own ``--x 3``: exit 2 (a usage error; 1 before round 68), the flag
    named with why and what to do instead (luigi.cfg's ``[MeetTask]``); luigi's own ``--log-level DEBUG`` alike (its
    ``[core]`` option); ``--workers 0``: exit 2 naming ``--workers``. Nothing run. Failed before round 67 (compat):
    "--MeetTask_x: unknown parameter" (not why), and ``--workers 0`` "--workers: unknown parameter"."""
    write_chain("compat67/meet_chain", CHAIN)
    other = nectar(settings, "run", "compat67/meet_chain/BothTask", "--x", "3", "--MeetTask-x", "3")
    assert other.returncode == 2, other.stdout + other.stderr  # as nectar's other usage errors
    assert "--MeetTask-x sets x of MeetTask" in other.stderr and "[MeetTask] x = " in other.stderr, other.stderr
    level = nectar(settings, "run", "compat67/meet_chain/BothTask", "--x", "3", "--log-level", "DEBUG")
    assert level.returncode == 2, level.stdout + level.stderr
    assert "--log-level is an option of luigi's own command line ([core] log_level)" in level.stderr, level.stderr
    zero = nectar(settings, "run", "compat67/meet_chain/BothTask", "--x", "3", "--workers", "0")
    assert zero.returncode == 2, zero.stdout + zero.stderr
    assert "--workers" in zero.stderr and "unknown parameter" not in zero.stderr, zero.stderr
