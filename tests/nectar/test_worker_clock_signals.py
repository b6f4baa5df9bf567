"""``nectar worker --clock`` (the workers' process of ``nectar serve``, with the schedules, triggers and waits loops):
a stop that comes once the clock's threads run is a graceful stop, whenever it comes. The workers' handlers were set
after the clock started: a SIGTERM in between ended the process at once (``os._exit(0)``), its clock's passes cut
where they were (a fire it was making never recorded), its registry never closed."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env, wait_until
from nectar.config import Settings
from nectar.registry import RunFilter
from nectar.service import Nectar

GATED_CHAIN = '''
import time
from pathlib import Path

import luigi
from nectar import NectarTask, Schedule


class GatedTask(NectarTask):
    """Its completeness is asked by the clock's fire: it says so, then waits for the test's gate."""

    schedules = [Schedule(interval_s=1, fire_time_param="when", name="each_second")]
    when = luigi.DateSecondParameter()

    def complete(self):
        Path({entered!r}).touch()
        deadline = time.monotonic() + 120
        while not Path({gate!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return False
'''
SCHEDULE = "gated.gated_chain.GatedTask.each_second"
LUIGI_CFG = b"[core]\nlog_level = WARNING\n"


def main_thread_opens_a_fifo(pid: int) -> bool:
    """Whether ``pid``'s main thread waits in ``open()`` of a FIFO for a writer (the kernel's ``wait_for_partner``)."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


def test_a_stop_while_the_clock_runs_and_before_the_workers_loop_ends_the_clocks_pass(
    settings: Settings, write_chain: Callable[[str, str], Path], processes: Processes, tmp_path: Path
) -> None:
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    write_chain("gated/gated_chain", GATED_CHAIN.format(entered=str(entered), gate=str(gate)))
    # the window widened: luigi reads the working folder's luigi.cfg as it is imported, and again where the workers'
    # loop adds the service's luigi.cfg, before it sets its handlers; a FIFO there holds the second read
    fifo = tmp_path / "luigi.cfg"
    os.mkfifo(fifo)
    config = tmp_path / "workers.cfg"
    config.write_bytes(LUIGI_CFG)
    env = {**base_env(), **settings_env(settings), "NECTAR_LUIGI_CONFIG": str(config)}
    proc = processes.start("worker", [*NECTAR, "worker", "--workers", "1", "--clock"], env, tmp_path)
    log = processes.log_of[proc.pid]

    def opening() -> bool:
        assert proc.poll() is None, log.read_text()
        return main_thread_opens_a_fifo(proc.pid)

    wait_until(opening)  # luigi imported: its first read
    fifo.write_bytes(LUIGI_CFG)  # opened once the reader waits, written, closed: the reader reads it to its end
    wait_until(opening)  # the workers' loop adds the service's luigi.cfg: the second
    wait_until(lambda: opening() and entered.exists())  # and the clock's thread is inside a fire
    writer = os.open(fifo, os.O_WRONLY)  # the reader's open returns; its read waits for what is written

    proc.send_signal(signal.SIGTERM)
    try:
        os.write(writer, LUIGI_CFG)
    except BrokenPipeError:  # the process is gone: the reader with it
        pass
    finally:
        os.close(writer)
    gate.touch()

    assert proc.wait(timeout=120) == 0, log.read_text()
    with Nectar(settings) as nectar:  # the fire under way when the stop came was made, its run queued
        fired, _ = nectar.runs.find(RunFilter(task="GatedTask"))
    assert [run.schedule_id for run in fired] == [SCHEDULE], log.read_text()
