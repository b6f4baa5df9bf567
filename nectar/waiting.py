"""The wait loop: checks what WAITING runs wait for, wakes them when it is there, ends them when their wait is over.

A run whose external data is missing waits in the registry (:mod:`nectar.registry.waits`), holding no
worker. Each pass (:meth:`WaitLoop.tick`) takes the runs whose check is due, checks each object they wait
for once (many runs often wait for one file) and each ``run:<id>`` they need, then per run: everything is
there → woken (PENDING: a worker runs it); a needed run ended FAILED or CANCELLED → FAILED, saying so; its
``wait_until`` passed → FAILED "waited 1h0m for …" (or CANCELLED, a skip, as its ``on_wait_timeout`` says);
else checked again later, the interval doubling from 1 s to ``poll_max``, never past its deadline. A store
that cannot answer is logged (once until it answers again) and its runs are checked again later, not failed.
Run by ``nectar clock`` (so ``nectar serve``), as many at once as wanted: each change of a run is guarded by
its state in the registry, so two loops checking one run at once change it once. Time comes from ``clock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nectar.passes import run_passes
from nectar.registry import Run, RunState, RunStore
from nectar.registry.model import RUN_PREFIX, waited
from nectar.stores.listing import exists as stored

logger = logging.getLogger("nectar.waiting")

#: seconds between two passes: how soon a due check is made
PASS_INTERVAL = 0.5
#: seconds between the first two checks of a run; each interval after it is the time waited so far (doubling)
FIRST_INTERVAL = 1.0
#: runs one pass checks at most (the longest due first; the rest wait for the next pass)
PASS_RUNS = 500


@dataclass
class _Pass:
    """What one pass found, each thing checked once: objects (present, or None when the store could not say)
    and the runs that waiters need."""

    present: dict[str, bool | None] = field(default_factory=dict)
    needed: dict[str, Run | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1


class WaitLoop:
    """Checks the WAITING runs of a registry, pass after pass (see the module)."""

    def __init__(
        self,
        runs: RunStore,
        poll_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        exists: Callable[[str], bool] = stored,
    ) -> None:
        self.runs = runs
        self.poll_max = poll_max
        self.clock = clock
        self.exists = exists
        #: the store errors logged, by object: each is logged once, until the object can be checked again
        self._failing: dict[str, str] = {}

    def tick(self) -> dict[str, int]:
        """One pass over the due WAITING runs; answer how many were woken, failed, skipped, checked later."""
        now = self.clock()
        found = _Pass()
        for run in self.runs.waiting(now, PASS_RUNS):
            found.count(self._check(run, now, found))
        return found.counts

    def _check(self, run: Run, now: float, found: _Pass) -> str:
        missing: list[str] = []
        unknown = False
        for item in run.waiting_for or ():
            if item.startswith(RUN_PREFIX):
                ended = self._needed_run_ended(run, item[len(RUN_PREFIX) :], found, now)
                if ended is not None:
                    return ended
                other = found.needed[item[len(RUN_PREFIX) :]]
                if other is None or other.state != RunState.DONE:
                    missing.append(item)
                continue
            present = self._present(item, found)
            unknown = unknown or present is None
            if present is False:
                missing.append(item)
        if not missing and not unknown:
            woken = self.runs.wake(run.id)
            if woken:
                logger.info("run %s of %s: what it waited for is there; queued", run.id, run.ref)
            return "woken" if woken else "gone"
        if missing and not unknown and run.wait_until is not None and now >= run.wait_until:
            return self._time_out(run, missing, now)
        return "later" if self.runs.check_later(run.id, self._next_check(run, now)) else "gone"

    def _needed_run_ended(self, run: Run, needed_id: str, found: _Pass, now: float) -> str | None:
        """If the run that ``run`` needs ended without being DONE (or does not exist): ``run`` fails, and how."""
        if needed_id not in found.needed:
            found.needed[needed_id] = self.runs.get(needed_id)
        other = found.needed[needed_id]
        if other is not None and other.state not in (RunState.FAILED, RunState.CANCELLED):
            return None
        why = "which does not exist" if other is None else f"which ended {other.state.value}: {other.error}"
        error = f"needed run {needed_id}, {why}"
        if self.runs.end_wait(run.id, error, now=now) is None:
            return "gone"
        logger.warning("run %s of %s failed: %s", run.id, run.ref, error)
        return "failed"

    def _present(self, uri: str, found: _Pass) -> bool | None:
        """Whether ``uri`` exists, asked once a pass; None when its store cannot say (logged once)."""
        if uri not in found.present:
            try:
                found.present[uri] = self.exists(uri)
                self._failing.pop(uri, None)
            except Exception as exc:  # any store's error: its runs are checked again later, not failed
                found.present[uri] = None
                said = f"{type(exc).__name__}: {exc}"
                if self._failing.get(uri) != said:
                    self._failing[uri] = said
                    logger.warning("cannot check %s (its waiting runs are checked again later): %s", uri, said)
        return found.present[uri]

    def _time_out(self, run: Run, missing: list[str], now: float) -> str:
        since = run.waiting_since if run.waiting_since is not None else now
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        skip = run.on_wait_timeout == "skip"
        # a skip ends CANCELLED, which alone reads like a cancel by someone: it says it was a skip
        error = f"{'skipped: ' if skip else ''}waited {waited(now - since)} for {missing[0]}{more}"
        state = self.runs.end_wait(run.id, error, skip=skip, now=now)
        if state is None:
            return "gone"
        logger.warning("run %s of %s %s: %s", run.id, run.ref, "skipped" if skip else "failed", error)
        return "skipped" if skip else "failed"

    def _next_check(self, run: Run, now: float) -> float:
        """The time waited so far (at least 1 s, at most ``poll_max``) from now, but never past the deadline."""
        since = run.waiting_since if run.waiting_since is not None else now
        interval = min(self.poll_max, max(FIRST_INTERVAL, now - since))
        if run.wait_until is not None and run.wait_until > now:
            return min(now + interval, run.wait_until)
        return now + interval

    def serve_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set (:func:`~nectar.passes.run_passes`)."""
        run_passes("checking waiting runs", self.tick, lambda: min(PASS_INTERVAL, self.poll_max), stop, logger)
