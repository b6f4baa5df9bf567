"""The trigger loop: polls every trigger at its interval and claims what landed, in any number of processes at once.

Each pass (:meth:`TriggerLoop.tick`) brings the registry's rows of file triggers in step with the
chain files, reloads the triggers when one changed anywhere (the registry's change counter, read at
every pass), and polls each trigger whose interval has passed: a listing after its cursor
(:mod:`nectar.stores.listing`: S3's ``StartAfter``, so a poll costs what is new, not what is there)
whose objects are claimed in the registry with their runs (:mod:`nectar.registry.triggers`). Several
loops make each object one run; one killed mid-poll leaves each object claimed or not, and the next
poll of any loop claims the rest. Time comes from ``clock`` (UTC seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from luigi.task_register import Register

from nectar.passes import Failures, pause_until, run_passes
from nectar.triggers.book import Poll
from nectar.triggers.model import TriggerRecord

if TYPE_CHECKING:
    from nectar.triggers.book import TriggerBook

logger = logging.getLogger("nectar.triggers")

#: seconds between two passes when no poll is due sooner: how soon a change made anywhere is seen
PASS_INTERVAL = 0.5
#: seconds before a trigger whose poll failed (the registry down, its chain not importing) is polled again
RETRY_AFTER = 5.0

#: the conditions of a poll that hold poll after poll, by what a poll says as one begins: what it found (None: not
#: this one), and what is said as it ends
HELD: dict[str, tuple[Callable[[Poll], str | None], str]] = {
    "cannot list": (lambda poll: poll.error, "lists again"),
    "new object(s) left for a later poll": (lambda poll: poll.full, "no new object left for a later poll"),
}


class TriggerLoop:
    """Polls the triggers of a :class:`~nectar.triggers.book.TriggerBook`; run by ``nectar clock`` and
    ``nectar serve``, as many at once as wanted."""

    def __init__(self, book: TriggerBook, clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.clock = clock
        self.runs = book.runs
        self._seen_changes: int | None = None
        self._records: dict[str, TriggerRecord] = {}
        #: when each trigger is polled next, by id
        self._due: dict[str, float] = {}
        #: by trigger, the conditions its last poll found that hold poll after poll (:data:`HELD`), each with what it
        #: said as it began or last changed: said again when what the user reads changes
        self._held: dict[str, dict[str, str]] = {}
        #: what it says of a trigger that fails poll after poll (its traceback once, not every RETRY_AFTER)
        self.failures = Failures(logger, "trigger", "polling again", RETRY_AFTER)
        self.stopping = threading.Event()

    def _reload(self) -> None:
        changes = self.runs.schedule_changes()
        if changes == self._seen_changes:
            return
        self._seen_changes = changes
        self._records = {record.id: record for record in self.runs.triggers() if not record.paused}
        self._due = {tid: self._due.get(tid, 0.0) for tid in self._records}
        self._held = {tid: held for tid, held in self._held.items() if tid in self._records}

    def next_due(self) -> float | None:
        """When the next poll is due (None without active triggers)."""
        return min(self._due.values(), default=None)

    def tick(self) -> dict[str, Poll]:
        """Sync, reload, poll what is due; answer each poll made, by trigger."""
        try:
            return self._pass()
        finally:
            Register.clear_instance_cache()  # luigi keeps every task made: one a claim

    def _pass(self) -> dict[str, Poll]:
        polls: dict[str, Poll] = {}
        declared = self.book.sync()
        self._reload()
        for trigger_id, record in list(self._records.items()):
            now = self.clock()
            if self.stopping.is_set() or self._due.get(trigger_id, 0.0) > now:
                continue
            if record.source == "file" and trigger_id not in declared:
                self._due[trigger_id] = now + RETRY_AFTER  # its chain file does not import now
                continue
            try:
                fresh = self.runs.trigger(trigger_id)  # another loop may have moved its cursor: start from there
                if fresh is None or fresh.version != record.version or fresh.paused:
                    self._seen_changes = None
                    continue
                poll = polls[trigger_id] = self.book.poll(fresh)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the registry (or the task's store) cannot answer, a chain's code raised
                # (its SystemExit too): polled again later
                self.failures.failed(trigger_id, exc)
                self._due[trigger_id] = now + RETRY_AFTER
                continue
            self.failures.cleared(trigger_id)
            self._logged(trigger_id, poll)
            self._due[trigger_id] = now if poll.more else now + record.spec.poll_s
            if "stale" in poll.states:
                self._seen_changes = None
        return polls

    def _logged(self, trigger_id: str, poll: Poll) -> None:
        """What a poll made, at INFO; a condition that holds poll after poll (:data:`HELD`: the store cannot list,
        objects left for a later poll) at WARNING as it begins or as what it says changes, and at INFO as it ends,
        not at every poll."""
        made = {state: n for state, n in poll.states.items() if state not in ("exists", "stale", "full")}
        if made:
            logger.info("trigger %s: %d new object(s): %s", trigger_id, poll.listed, made)
        before = self._held.get(trigger_id, {})
        now = {held: said for held, (found, _) in HELD.items() if (said := found(poll)) is not None}
        for held, said in sorted(now.items()):
            if before.get(held) != said:  # as it begins, or says something else (a folder gone, then refused)
                logger.warning("trigger %s: %s: %s", trigger_id, held, said)
        for held in sorted(before.keys() - now.keys()):
            logger.info("trigger %s: %s", trigger_id, HELD[held][1])
        if now:
            self._held[trigger_id] = now
        else:
            self._held.pop(trigger_id, None)

    def serve_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set (:func:`~nectar.passes.run_passes`), waking when a poll is due."""
        self.stopping = stop
        run_passes(
            "polling triggers",
            self.tick,
            lambda: pause_until(self.next_due(), self.clock(), PASS_INTERVAL),
            stop,
            logger,
        )
