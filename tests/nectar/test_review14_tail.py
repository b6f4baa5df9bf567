"""review14 (round 60): an attempt whose run was recorded DONE still has the rest of its attempt to do, its last log
line among it; its worker letting it go meanwhile (a drain's end: ``Spares.close``) must not kill it there. A guard
for a slot freed at DONE: wt60-slots tried it (``spares.run_ended``, 9e40b32, reverted in cfc9399), which this
failed (3 of 3)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nectar import attempt as attempt_module
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    first_spare,
    new_executor,
    pid_of,
    quick,
    submit,
)


@pytest.fixture
def attempt_log(tmp_path: Path) -> Iterator[Path]:
    """A file the attempt's records (``nectar.attempt``'s, INFO) go to, in the spares forked from now on too."""
    path = tmp_path / "attempt.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    logger = logging.getLogger(attempt_module.__name__)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def test_an_attempt_let_go_by_its_stopping_worker_after_its_run_ended_still_writes_its_end(
    new_executor: Callable[..., Executor],  # noqa: F811
    quick: Settings,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attempt_log: Path,
) -> None:
    """One slot, processes reused. The run is recorded DONE; the rest of its attempt (held at a gate just before its
    last log line, "attempt 1 ended: DONE", as a process that gets no core for a moment) has yet to run when its
    worker, stopping, lets its spares go as its drain ends (``Spares.close``, what ``serve_forever`` does once no
    child is left). The process must still end its attempt: its log line written. On wt60-slots 9e40b32 its slot is
    freed as DONE is recorded, so the stopping worker's loop finds no child, lets the process go as a spare not
    ready and kills it (SIGKILL) in its attempt's tail: the run's end is never logged. (On main the slot is held
    until the attempt has returned, its line written.)"""
    gate, entered = tmp_path / "tail-gate", tmp_path / "tail-entered"

    def held() -> None:  # in the attempt's process, just before its last log line
        entered.touch()
        while not gate.exists():
            time.sleep(0.01)

    monkeypatch.setattr(attempt_module, "stop_mock_filesystem", held)
    executor, nectar = new_executor(concurrency=1, runs_per_process=2), closed_at_end(Nectar(quick))
    first_spare(executor)
    run_id = submit(nectar, 91)
    try:

        def in_its_tail() -> bool:
            executor._serve_once()
            run = nectar.runs.get(run_id)
            return run is not None and run.state == RunState.DONE and entered.exists()

        wait_until(in_its_tail, timeout=60)
        run = nectar.runs.get(run_id)
        assert run is not None
        process = pid_of(run)
        executor._serve_once()  # what the attempt said as its run was recorded DONE, if it said it then, is heard
        executor.stop()
        if executor.children:  # its slot held until its attempt returned (main): the drain waits for it
            gate.touch()

            def drained() -> bool:
                executor._serve_once()
                return not executor.children

            wait_until(drained, timeout=60)
        closing = threading.Thread(target=executor.spares.close)  # as serve_forever ends once no child is left
        closing.start()
        # let go: killed and reaped (close returned), or its socket closed and its exit waited for
        wait_until(lambda: not closing.is_alive() or process in executor.spares._leaving, timeout=60)
    finally:
        gate.touch()
    closing.join(timeout=60)
    assert not closing.is_alive()
    ended = [line for line in attempt_log.read_text().splitlines() if run_id in line and "ended" in line]
    assert ended and ended[-1].endswith("attempt 1 ended: DONE"), attempt_log.read_text()
