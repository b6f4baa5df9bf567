"""One attempt of a run in this process (:mod:`nectar.attempt`), against a real luigid: what it asks luigid ahead."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping

import pytest

from nectar.attempt import attempt
from nectar.build import Build
from nectar.config import Settings
from nectar.leases import process_name
from nectar.luigid import scheduler_of
from nectar.registry import RunState
from nectar.service import Nectar

#: the signals whose handlers an attempt's lease sets in the main thread, and sets back to their defaults at its end
LEASE_SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)


class _AskedBy(logging.Handler):
    """At the attempt's "started" record: whether luigid had been asked about the run's disabled steps by then."""

    def __init__(self, asked: Mapping[str, object], task_id: str) -> None:
        super().__init__(logging.INFO)
        self.asked, self.task_id = asked, task_id
        self.seen: list[bool] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().endswith(" started"):
            self.seen.append(self.task_id in self.asked)


def test_a_first_attempt_asks_luigid_about_disabled_steps_before_it_sets_itself_up(
    settings: Settings, luigid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """luigid answers while the attempt notes its start, takes its lease and compiles its chain: the question is the
    attempt's first act. The run still ends DONE, the answer read."""
    settings = settings.replace(scheduler_url=luigid)
    nectar = Nectar(settings)
    nectar.submit("testchains", "hello_luigiworld_chain", "TestS3Task", {})
    run = nectar.runs.claim(process_name())
    assert run is not None and run.attempt == 1
    client = scheduler_of(settings)
    assert client is not None
    made = Build(luigid, process_name(), None, client)
    handler = _AskedBy(client._disabled_asked, run.task_id)
    caplog.set_level(logging.INFO, logger="nectar.attempt")
    logging.getLogger("nectar.attempt").addHandler(handler)
    saved = {signum: signal.getsignal(signum) for signum in LEASE_SIGNALS}
    try:
        ending = attempt(settings, nectar.runs, run, made)
    finally:
        logging.getLogger("nectar.attempt").removeHandler(handler)
        for signum, handler_was in saved.items():
            signal.signal(signum, handler_was)
    assert handler.seen == [True]
    assert ending.state == RunState.DONE
    assert client._disabled_asked == {}  # its answer was read
