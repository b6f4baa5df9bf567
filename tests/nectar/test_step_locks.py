"""Without luigid (luigi's local scheduler, each attempt's own), two runs that share a step make it one at a time:
the one that comes second waits for the first's lock, then finds the step done and does not run it again."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from nectar import step_locks
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.faults.conftest import waitfor
from tests.helpers.registries import closed_at_end

#: a step two tasks need, which marks each start and end of its run in a folder and waits for a gate in between
SHARED_CHAIN = """
import os
import time
from pathlib import Path

from nectar import NectarTask

MARKS, GATE = Path(@MARKS@), Path(@GATE@)


class SharedTask(NectarTask):
    def run(self):
        (MARKS / f"start-{os.getpid()}").touch()
        while not GATE.exists():
            time.sleep(0.01)
        with self.output().open("w") as out:
            out.write(f"{os.getpid()}\\n")
        (MARKS / f"end-{os.getpid()}").touch()


class LeftTask(NectarTask):
    def requires(self):
        return SharedTask()

    def run(self):
        with self.output().open("w") as out:
            out.write(type(self).__name__)


class RightTask(LeftTask):
    pass
"""


def test_two_runs_sharing_a_step_without_luigid_make_it_once(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    marks.mkdir()
    write_chain(
        "lock/shared_chain", SHARED_CHAIN.replace("@MARKS@", repr(str(marks))).replace("@GATE@", repr(str(gate)))
    )
    local = settings.replace(scheduler_url=None)
    nectar = closed_at_end(Nectar(local))
    runs = [nectar.submit("lock", "shared_chain", task, {}).run for task in ("LeftTask", "RightTask")]
    start_worker(local, workers=2)  # two attempts at once, each with luigi's local scheduler
    log = tmp_path / "worker-0.log"

    def made(word: str) -> list[str]:
        return sorted(mark.name for mark in marks.glob(f"{word}-*"))

    def second_started_or_waits() -> bool:
        waits = log.exists() and "waits for another run that makes it" in log.read_text()
        return len(made("start")) == 2 or (len(made("start")) == 1 and waits)

    waitfor(second_started_or_waits, 60, "the second run to start the shared step, or to wait for it")
    assert len(made("start")) == 1, f"two runs made their shared step at once: {made('start')}"

    gate.touch()

    def ended() -> bool:
        return not any(run is None or nectar.run(run.id).state.active for run in runs)

    waitfor(ended, 60, "both runs to end")
    assert [nectar.run(run.id).state for run in runs if run] == [RunState.DONE] * 2, [r and r.id for r in runs]
    assert (len(made("start")), len(made("end"))) == (1, 1), "the step was made again once it was done"


#: a step whose run yields a dependency luigi has not made yet (luigi's dynamic dependencies): luigi leaves that run
#: at its ``yield``, makes the dependency, then runs the step again from its start in the same process
DYNAMIC_CHAIN = """
import os
from pathlib import Path

from nectar import NectarTask

MARKS = Path(@MARKS@)


class UpstreamTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("upstream")


class DynamicTask(NectarTask):
    def run(self):
        (MARKS / f"start-{os.getpid()}-{len(list(MARKS.iterdir()))}").touch()
        upstream = yield UpstreamTask()
        with self.output().open("w") as out:
            out.write(upstream.open().read())
"""


def test_a_step_with_a_dynamic_dependency_runs_again_under_its_lock_without_luigid(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    write_chain("lock/dynamic_chain", DYNAMIC_CHAIN.replace("@MARKS@", repr(str(marks))))
    local = settings.replace(scheduler_url=None)
    nectar = closed_at_end(Nectar(local))
    run = nectar.submit("lock", "dynamic_chain", "DynamicTask", {}).run
    assert run is not None
    start_worker(local, workers=1)  # the step runs again in the process that left it at its yield

    waitfor(lambda: not nectar.run(run.id).state.active, 120, "the run to end")
    assert nectar.run(run.id).state == RunState.DONE
    starts = sorted(mark.name.split("-")[1] for mark in marks.iterdir())
    assert len(starts) == 2 and len(set(starts)) == 1, f"the step was not run again in its process: {starts}"


def test_a_process_forked_under_a_step_lock_keeps_no_copy_of_it(tmp_path: Path) -> None:
    """A child that outlived its step would keep the lock of the file its holder removed, and a run waiting on that
    file would wait for the child's end: the child closes its copy as it starts."""
    locks = tmp_path / "step-locks"
    readable, writable = os.pipe()
    with step_locks.local_builds(tmp_path), step_locks.held("lock/shared_chain/SharedTask"):
        child = os.fork()
        if child == 0:  # the child: which of its descriptors name a lock's file
            try:
                opened = []
                for fd in os.listdir("/proc/self/fd"):
                    with contextlib.suppress(OSError):  # the descriptor listdir read /proc/self/fd with
                        opened.append(os.readlink(f"/proc/self/fd/{fd}"))
                os.write(writable, "\n".join(path for path in opened if path.startswith(str(locks.resolve()))).encode())
            finally:
                os._exit(0)
        os.close(writable)
        with os.fdopen(readable) as answer:
            kept = answer.read()
        os.waitpid(child, 0)
    assert kept == "", f"the forked child kept the step's lock open: {kept}"
