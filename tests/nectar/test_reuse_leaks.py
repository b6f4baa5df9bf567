"""What a run leaves in its reused attempt process beyond its module never reaches the next run, through the real
worker (:func:`nectar.reuse.put_back`, :func:`nectar.reuse.left_open`): a log handler its ``run()`` added to a named
logger is taken off and closed (a module the run imported keeps what its import set up, as in a fresh process's run),
luigi's configuration it changed is put back, and a process whose run left a file descriptor open takes no other
run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.faults.conftest import alive
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import output, reused
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
CHAIN = """
import gc
import json
import logging
import os
import socket
import sys

import luigi
from nectar import NectarTask


def helper(where):
    # a module of the run's, imported once per process: its import adds a handler to its own logger
    sys.path.insert(0, where)
    import leaks_helper
    return leaks_helper


class LeftInACycle:  # what a run holds until it ends (its luigi worker, its tasks), then leaves in a reference cycle
    pass


class ChangesTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()
    kind = luigi.Parameter()

    def run(self):
        helper(self.where)
        if self.kind == "log handler":
            logging.getLogger("leaks.run").addHandler(logging.FileHandler(os.path.join(self.where, "handler.log")))
        elif self.kind == "luigi config":
            config = luigi.configuration.get_config()
            config.set("worker", "leaks_option", "set by a run")
            config.set("leaks_section", "option", "set by a run")
            config.remove_option("worker", "wait_interval")
        elif self.kind == "logger settings":
            logging.getLogger("leaks.run").setLevel(logging.ERROR)
            logging.getLogger("leaks.run").propagate = False
            logging.getLogger("leaks.made").setLevel(logging.DEBUG)  # a logger no one made before
            logging.getLogger("luigi-interface").disabled = True  # one the process had before the run
            logging.disable(logging.WARNING)
        elif self.kind == "socket a module keeps":
            helper(self.where).KEPT.append(socket.socketpair())  # as a client keeps its pooled connection
        else:
            left = LeftInACycle()
            left.me = left
            gc.collect()  # it outlives a full pass: in the oldest generation now, as what a run holds till it ends
        with self.output().open("w") as out:
            out.write("changed\\n")


class LeavesOpenTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()

    def run(self):
        os.open(os.path.join(self.where, "left-open"), os.O_RDONLY | os.O_CREAT)  # never closed
        with self.output().open("w") as out:
            out.write("left open\\n")


class ReopensStdinAndLeavesItOpenTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()

    def run(self):
        held = os.readlink("/proc/self/fd/0")
        os.open("/proc/self/fd/0", os.O_RDONLY)  # what the process's stdin is open on, again: never closed
        os.close(0)  # and the process's own descriptor on it closed: as many open on it after the run as before
        with self.output().open("w") as out:
            out.write(held)


class ClosesKeptAndLeavesOpenTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()

    def run(self):
        kept = helper(self.where).KEPT
        for pair in kept:  # the sockets a module kept since an earlier run: as a client drops its pooled connection
            for end in pair:
                end.close()
        os.open(os.path.join(self.where, "left-open"), os.O_RDONLY | os.O_CREAT)  # never closed
        with self.output().open("w") as out:
            out.write(f"closed {len(kept)}\\n")
        kept.clear()


class LooksTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()

    def run(self):
        left = sum(type(held).__name__ == "LeftInACycle" for held in gc.get_objects())  # no collection: as found
        helper(self.where)
        config = luigi.configuration.get_config()
        opened = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                opened.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        seen = {
            "handlers": len(logging.getLogger("leaks.run").handlers),
            "loggers": [
                (logger.level, logger.propagate, logger.disabled)
                for logger in map(logging.getLogger, ["leaks.run", "leaks.made", "luigi-interface"])
            ],
            "info_enabled": logging.getLogger("leaks.run").isEnabledFor(logging.INFO),
            "disabled_below": logging.root.manager.disable,
            "helper_handlers": len(logging.getLogger("leaks_helper").handlers),
            "worker_option": config.get("worker", "leaks_option", None),
            "sections": sorted(config.sections()),
            "wait_interval": config.get("worker", "wait_interval", None),
            "left_in_a_cycle": left,
            "open_here": sorted(os.path.basename(path) for path in opened if path.startswith(self.where)),
        }
        with self.output().open("w") as out:
            json.dump(seen, out)
"""
HELPER = """
import logging

KEPT = []

logging.getLogger("leaks_helper").addHandler(logging.NullHandler())
"""


@pytest.fixture
def leaks(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path], tmp_path: Path) -> Settings:
    write_chain("leaks/leaks_chain", CHAIN)
    where = tmp_path / "where"
    where.mkdir()
    (where / "leaks_helper.py").write_text(HELPER)
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=0, retry_delay=0)


def run(nectar: Nectar, task: str, n: int, where: Path, **params: str) -> Run:
    submission = nectar.submit("leaks", "leaks_chain", task, {"n": n, "where": str(where), **params})
    assert submission.run is not None
    ended_run = ended(nectar, submission.run.id)
    assert ended_run.state == RunState.DONE, ended_run
    return ended_run


@pytest.mark.parametrize(
    "kind", ["log handler", "logger settings", "luigi config", "reference cycle", "socket a module keeps"]
)
def test_a_run_after_one_that_left_something_in_its_process_sees_what_a_run_in_a_fresh_one_sees(
    leaks: Settings, start_worker: StartWorker, tmp_path: Path, kind: str
) -> None:
    """A log handler its ``run()`` added to a named logger (taken off, its file closed: while the handler of a
    module's import, ``leaks_helper``'s, stays), the levels, ``propagate`` and ``disabled`` it set on loggers (one it
    made too) and ``logging.disable``'s level, luigi's configuration it changed (an option set, a section added, an
    option removed), an object it held till it ended then left in a reference cycle (collected). A socket a module
    keeps (a client's pooled connection: boto3's to S3, opened by a process's first run) is the module's state, as a
    client is: its process takes the next run all the same."""
    where = tmp_path / "where"
    nectar = closed_at_end(Nectar(leaks))
    start_worker(leaks, workers=1)
    fresh = run(nectar, "LooksTask", 0, where)
    assert not reused(fresh)
    changed = run(nectar, "ChangesTask", 1, where, kind=kind)
    looks = [fresh]

    def looked_in_the_changed_process() -> bool:  # the worker's spares take runs in turn: which one is not counted
        looks.append(run(nectar, "LooksTask", len(looks) + 1, where))
        return pid_of(looks[-1]) == pid_of(changed)

    wait_until(looked_in_the_changed_process, timeout=120, interval=0)
    assert reused(looks[-1])
    expected = json.loads(output(nectar, fresh))
    assert expected["handlers"] == 0 and expected["helper_handlers"] == 1 and expected["worker_option"] is None
    assert expected["wait_interval"] is not None and "leaks_section" not in expected["sections"]
    assert expected["open_here"] == [] and expected["left_in_a_cycle"] == 0
    assert (
        expected["loggers"][:2] == [[0, True, False]] * 2
        and not expected["loggers"][2][2]
        and expected["disabled_below"] == 0
    )
    assert json.loads(output(nectar, looks[-1])) == expected


def test_a_process_whose_run_left_a_file_descriptor_open_takes_no_other_run(
    leaks: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    where = tmp_path / "where"
    nectar = closed_at_end(Nectar(leaks))
    start_worker(leaks, workers=1)
    left = run(nectar, "LeavesOpenTask", 1, where)

    wait_until(lambda: not alive(pid_of(left)), timeout=60)
    said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    opened = f"its run left open 1 file descriptor(s): {where.resolve() / 'left-open'}"
    assert f"attempt process {pid_of(left)} exits after 1 run(s): {opened}" in said, said
    after = [run(nectar, "LooksTask", n, where) for n in range(2, 6)]
    assert all(json.loads(output(nectar, later))["open_here"] == [] for later in after)


def test_a_process_whose_run_left_a_file_open_as_it_closed_a_socket_of_the_process_takes_no_other_run(
    leaks: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """As many descriptors open after the run as before it (two sockets a module kept since an earlier run closed,
    one file left open), but not the same: its process retires all the same."""
    where = tmp_path / "where"
    nectar = closed_at_end(Nectar(leaks))
    start_worker(leaks, workers=1)
    kept = run(nectar, "ChangesTask", 1, where, kind="socket a module keeps")
    tries = [kept]

    def left_open_in_the_process_that_kept_sockets() -> bool:  # the worker's spares take runs in turn
        tries.append(run(nectar, "ClosesKeptAndLeavesOpenTask", len(tries) + 1, where))
        return pid_of(tries[-1]) == pid_of(kept)

    wait_until(left_open_in_the_process_that_kept_sockets, timeout=120, interval=0)
    assert output(nectar, tries[-1]) == "closed 1\n"
    wait_until(lambda: not alive(pid_of(kept)), timeout=60)
    said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    opened = f"its run left open 1 file descriptor(s): {where.resolve() / 'left-open'}"
    assert f"attempt process {pid_of(kept)} exits after 2 run(s): {opened}" in said, said


def test_a_process_whose_first_run_left_open_what_it_closed_of_its_own_takes_no_other_run(
    leaks: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    """The first run of a fresh process opens again what the process's stdin is open on, and closes its stdin: as
    many descriptors open on that file (or pipe) after the run as before, but one the run opened, which no object
    of the process holds: its process retires all the same. Before, the first look compared how many descriptors
    were open on each file."""
    nectar = closed_at_end(Nectar(leaks))
    start_worker(leaks, workers=1)
    left = run(nectar, "ReopensStdinAndLeavesItOpenTask", 1, tmp_path / "where")
    held = output(nectar, left)
    assert held  # what stdin was open on

    wait_until(lambda: not alive(pid_of(left)), timeout=60)
    said = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    opened = f"its run left open 1 file descriptor(s): {'pipe' if held.startswith('pipe:[') else held}"
    assert f"attempt process {pid_of(left)} exits after 1 run(s): {opened}" in said, said
