"""A run in a reused attempt process starts where a run in a fresh one does: the working directory, environment
variables, ``sys.path``, file mode mask and signal handlers, the excepthooks, the sockets' default timeout, the
``warnings`` filters and what shows a warning, the collector's switch and thresholds, the recursion limit, the switch
interval, the tracers and profilers that a run changed are put back before the next (:func:`nectar.reuse.put_back`), the
``atexit`` callbacks it registered are dropped, and the log handlers its chain's import added are not added again to
those of the last import (:mod:`nectar.logs.module_handlers`), through the real worker."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nectar.config import Settings
from nectar.registry import Run, RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import output, reused
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
CHAIN = """
import atexit
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import luigi
from nectar import NectarTask

# a handler as the chain is imported: its module is executed anew for each run, its logger is the process's
logging.getLogger("slate.chain").addHandler(logging.NullHandler())


class ChangesTask(NectarTask):
    n = luigi.IntParameter()
    where = luigi.Parameter()

    def run(self):
        os.chdir(self.where)
        os.environ["SLATE_ADDED"] = "by a run"
        os.environ["SLATE_CHANGED"] = "by a run"
        os.environ.pop("SLATE_REMOVED", None)
        sys.path.insert(0, self.where)
        os.umask(0o077)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # a spare ignores it
        signal.signal(signal.SIGWINCH, lambda *_: None)
        with self.output().open("w") as out:
            out.write("changed\\n")


def named(hook):
    return f"{hook.__module__}.{hook.__qualname__}"


class HooksTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        warnings.simplefilter("error")  # the process's list, changed in place
        warnings.catch_warnings(record=True).__enter__()  # left entered: a list of its own, warnings recorded
        warnings.filterwarnings("ignore", "slate")
        sys.excepthook = sys.unraisablehook = threading.excepthook = lambda *args: None
        socket.setdefaulttimeout(3.5)
        os.environ["TZ"] = "Asia/Tokyo"
        time.tzset()
        with self.output().open("w") as out:
            out.write("changed\\n")


class LooksAtHooksTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        seen = {
            "filters": [(action, str(message), kind.__name__) for action, message, kind, *_ in warnings.filters],
            "showwarning": named(warnings.showwarning),
            "shower": named(warnings._showwarnmsg_impl),
            "hooks": [named(hook) for hook in (sys.excepthook, sys.unraisablehook, threading.excepthook)],
            "timeout": socket.getdefaulttimeout(),
            "zone": [time.tzname, time.strftime("%z", time.localtime(0))],
        }
        with self.output().open("w") as out:
            json.dump(seen, out)


class HeldByExit:  # what a run's atexit callback holds (its module executed anew for each run: a class each)
    pass


class ExitTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        atexit.register(print, HeldByExit())  # as a task does to clean up as its process exits
        with self.output().open("w") as out:
            out.write("registered\\n")


class LooksAtExitTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        held = sum(type(found).__name__ == "HeldByExit" for found in gc.get_objects())
        with self.output().open("w") as out:
            json.dump({"held": held}, out)


class TunesTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        gc.disable()
        gc.set_threshold(5, 3, 2)
        sys.setrecursionlimit(4321)
        sys.setswitchinterval(0.25)
        with self.output().open("w") as out:
            out.write("tuned\\n")


class LooksAtTuningTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        seen = {
            "collects": gc.isenabled(),
            "thresholds": gc.get_threshold(),
            "recursion": sys.getrecursionlimit(),
            "switch": sys.getswitchinterval(),
        }
        with self.output().open("w") as out:
            json.dump(seen, out)


def tracer(frame, event, arg):
    return tracer


class TracesTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        sys.settrace(tracer)
        sys.setprofile(tracer)
        threading.settrace(tracer)
        threading.setprofile(tracer)
        with self.output().open("w") as out:
            out.write("traced\\n")


class LooksAtTracersTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        found = (sys.gettrace(), sys.getprofile(), threading.gettrace(), threading.getprofile())
        seen = [repr(each) for each in found]
        with self.output().open("w") as out:
            json.dump(seen, out)


class LooksTask(NectarTask):
    n = luigi.IntParameter()

    def run(self):
        mask = os.umask(0)
        os.umask(mask)
        names = ("SLATE_ADDED", "SLATE_CHANGED", "SLATE_REMOVED")
        # a child's environment is the C library's, which os.environ's writes change too
        child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout.splitlines()
        seen = {
            "cwd": os.getcwd(),
            "environ": {name: os.environ.get(name) for name in names},
            "child": sorted(line for line in child if line.startswith(names)),
            "path": sys.path,
            "umask": mask,
            "log_handlers": len(logging.getLogger("slate.chain").handlers),
            "signals": [repr(signal.getsignal(signum)) for signum in (signal.SIGHUP, signal.SIGWINCH)],
        }
        with self.output().open("w") as out:
            json.dump(seen, out)
"""


@pytest.fixture
def slate(settings: Settings, luigid: str, write_chain: Callable[[str, str], Path]) -> Settings:
    write_chain("slate/slate_chain", CHAIN)
    return settings.replace(scheduler_url=luigid, spare_idle=KEPT, retries=1, retry_delay=0)


def run(nectar: Nectar, task: str, **params: object) -> Run:
    submission = nectar.submit("slate", "slate_chain", task, params)
    assert submission.run is not None
    ended_run = ended(nectar, submission.run.id)
    assert ended_run.state == RunState.DONE, ended_run
    return ended_run


def fresh_and_reused(nectar: Nectar, looks: str, changes: str, **params: object) -> tuple[dict[str, Any], Run]:
    """What ``looks`` saw in a fresh process, and its run in the process of a ``changes`` run (``params``) after."""
    fresh = run(nectar, looks, n=0)
    assert not reused(fresh)
    changed = run(nectar, changes, n=1, **params)
    tries = [fresh]

    def looked_in_the_changed_process() -> bool:  # the worker's spares take runs in turn: which one is not counted
        tries.append(run(nectar, looks, n=len(tries) + 1))
        return pid_of(tries[-1]) == pid_of(changed)

    wait_until(looked_in_the_changed_process, timeout=120, interval=0)
    assert reused(tries[-1])
    return json.loads(output(nectar, fresh)), tries[-1]


def test_a_run_in_a_reused_process_sees_what_a_run_in_a_fresh_one_sees(
    slate: Settings, start_worker: StartWorker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLATE_CHANGED", "the worker's")
    monkeypatch.setenv("SLATE_REMOVED", "the worker's")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nectar = closed_at_end(Nectar(slate))
    start_worker(slate, workers=1)
    expected, later = fresh_and_reused(nectar, "LooksTask", "ChangesTask", where=str(elsewhere))
    worker_env = {"SLATE_ADDED": None, "SLATE_CHANGED": "the worker's", "SLATE_REMOVED": "the worker's"}
    assert expected["environ"] == worker_env and expected["cwd"] != str(elsewhere) and expected["log_handlers"] == 1
    assert expected["signals"] == [repr(signal.SIG_IGN), repr(signal.SIG_DFL)]
    assert json.loads(output(nectar, later)) == expected


def test_a_run_in_a_reused_process_finds_the_hooks_and_warnings_filters_a_fresh_one_finds(
    slate: Settings, start_worker: StartWorker
) -> None:
    """A run that set the excepthooks (``sys``'s, ``sys.unraisablehook``, ``threading``'s), the sockets' default
    timeout, warnings filters (one in place, then in the list of a ``catch_warnings(record=True)`` it left entered,
    which also took over what shows a warning) and time zone (``TZ``, ``time.tzset()``): the next run of its process
    finds them as a fresh one."""
    nectar = closed_at_end(Nectar(slate))
    start_worker(slate, workers=1)
    expected, later = fresh_and_reused(nectar, "LooksAtHooksTask", "HooksTask")
    assert expected["timeout"] is None and "<lambda>" not in str(expected["hooks"]) and expected["zone"][1] != "+0900"
    assert expected["filters"][0][0] != "error" and expected["shower"] == "warnings._showwarnmsg_impl"
    assert json.loads(output(nectar, later)) == expected


def test_the_atexit_callbacks_of_a_run_in_a_reused_process_are_dropped_with_what_they_hold(
    slate: Settings, start_worker: StartWorker
) -> None:
    """A run that registered an ``atexit`` callback: the next run of its process finds it dropped, as what it held
    (kept, the callbacks piled up run after run with what they held; an attempt process runs none: ``os._exit``)."""
    nectar = closed_at_end(Nectar(slate))
    start_worker(slate, workers=1)
    expected, later = fresh_and_reused(nectar, "LooksAtExitTask", "ExitTask")
    assert expected == {"held": 0}
    assert json.loads(output(nectar, later)) == expected


def test_a_run_in_a_reused_process_finds_the_collector_recursion_limit_and_switch_interval_a_fresh_one_finds(
    slate: Settings, start_worker: StartWorker
) -> None:
    """A run that disabled the collector, set its thresholds, the recursion limit and the threads' switch interval:
    the next run of its process finds them as a fresh one (left, every later run's reference cycles stayed until the
    pass between runs)."""
    nectar = closed_at_end(Nectar(slate))
    start_worker(slate, workers=1)
    expected, later = fresh_and_reused(nectar, "LooksAtTuningTask", "TunesTask")
    assert expected["collects"] is True and expected["thresholds"] != [5, 3, 2]
    assert expected["recursion"] != 4321 and expected["switch"] != 0.25
    assert json.loads(output(nectar, later)) == expected


def test_a_run_in_a_reused_process_finds_no_tracer_or_profiler_a_run_before_left(
    slate: Settings, start_worker: StartWorker
) -> None:
    """A run that set a tracer and a profiler (``sys``'s, for the main thread; ``threading``'s, for each new thread):
    the next run of its process finds them as a fresh one (left, they ran on every call of every later run)."""
    nectar = closed_at_end(Nectar(slate))
    start_worker(slate, workers=1)
    expected, later = fresh_and_reused(nectar, "LooksAtTracersTask", "TracesTask")
    assert "tracer" not in str(expected)
    assert json.loads(output(nectar, later)) == expected
