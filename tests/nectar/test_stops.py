"""A luigid asked to stop is never killed while it saves its state (nectar.stops.await_stop, as ``nectar serve``
awaits it): past its stop timeout, a save under way is waited for while it moves; one that stopped moving is
killed, and the state file left is the last whole one."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import Processes, send, waitfor
from nectar.luigid import SchedulerClient
from nectar.stops import await_stop, luigid_saving
from tests.nectar.test_luigid_state import WORKER, saved_tasks, start

#: the stop timeout the test's luigid is given (seconds on the test's own clock, which only the test moves)
STOP_TIMEOUT = 20.0
#: tasks, each with many parameters: a save of them takes a while (~0.3 s alone), long enough to be caught midway
TASKS, PARAMS = 400, 400


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fill(client: SchedulerClient, prefix: str) -> set[str]:
    """:data:`TASKS` DONE tasks named ``<prefix>_<n>`` added to luigid; their ids."""
    ids = {f"{prefix}_{n}" for n in range(TASKS)}
    for task_id in sorted(ids):
        params = {f"p{j}": f"{task_id}-{j}" for j in range(PARAMS)}
        added = {"family": "Probe", "module": "probes", "params": params, "deps": [], "runnable": True}
        client.call("add_task", worker=WORKER, status="DONE", task_id=task_id, **added)
    return ids


@contextmanager
def frozen_mid_save(proc: subprocess.Popen[bytes], state: Path, clock: Clock) -> Iterator[threading.Thread]:
    """``proc`` (luigid) asked to stop and awaited as serve awaits it (on ``clock``, in a thread, yielded), frozen
    (SIGSTOP) as soon as its save of its state is seen under way; thawed at the end, whatever happened."""
    saving = luigid_saving(state / "state.pickle")  # made before the stop, as serve makes it
    proc.send_signal(signal.SIGTERM)
    awaiting = threading.Thread(target=await_stop, args=("luigid", proc, STOP_TIMEOUT, STOP_TIMEOUT, saving, clock))
    awaiting.start()
    try:
        waitfor(lambda: saving() is not None or proc.poll() is not None, 60, "luigid to begin its save", interval=0)
        send(proc.pid, signal.SIGSTOP)
        assert proc.poll() is None and saving() is not None, "luigid's save ended before it was caught"
        yield awaiting
    finally:
        send(proc.pid, signal.SIGCONT)
        awaiting.join(60)


def test_luigid_saving_its_state_past_its_stop_timeout_is_waited_for_not_killed(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid holding many tasks, frozen midway through the save its stop makes: past its stop timeout it is not
    killed (serve killed it there, and every task since its start was lost) but waited for, said at WARNING; thawed,
    it ends its save and exits 0, every task saved."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    held = fill(client, "Probe")
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="nectar.supervisor"), frozen_mid_save(proc, state, clock) as awaiting:
        clock.now = STOP_TIMEOUT + 1  # past its deadline
        said = "luigid did not stop within 20s: it is saving its state"
        waitfor(lambda: said in caplog.text or not awaiting.is_alive(), 60, "serve to wait for the save, or kill")
        assert proc.poll() is None and awaiting.is_alive(), caplog.text  # not killed: waited for
        assert said in caplog.text
    assert not awaiting.is_alive()
    assert proc.returncode == 0
    assert saved_tasks(state) == held
    assert "killing it" not in caplog.text


def test_luigid_whose_save_stopped_moving_is_killed_and_the_last_whole_state_kept(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A save that makes no progress for the stop timeout past the deadline (luigid frozen midway) is killed then,
    said at ERROR: the state file is the one luigid's last whole save left (the first luigid's), not a cut one."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state)
    first = fill(client, "First")
    processes.stop(proc)
    proc, client = start(processes, state)
    fill(client, "Second")
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="nectar.supervisor"), frozen_mid_save(proc, state, clock) as awaiting:
        clock.now = STOP_TIMEOUT + 1
        waitfor(lambda: "it is saving its state" in caplog.text, 60, "serve to say it waits for luigid's save")
        clock.now = 2 * STOP_TIMEOUT + 2  # no progress since, for longer than the stop timeout
        awaiting.join(60)
        assert not awaiting.is_alive()
    assert proc.returncode == -signal.SIGKILL
    assert "luigid's save of its state made no progress within 20s; killing it" in caplog.text
    assert saved_tasks(state) == first
