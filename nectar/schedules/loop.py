"""The firing loop: turns every due fire time of every schedule into a run, in any number of processes at once.

Each pass (:meth:`ScheduleLoop.tick`) brings the registry's rows of file schedules in step with the
chain files, reloads the schedules when one changed anywhere (a counter in the registry, read at
every pass: a change made on any machine is seen within :data:`PASS_INTERVAL`), fires what is due
and queues held fires whose turn came. A fire is claimed in the registry with its run
(:mod:`nectar.registry.schedules`), so several loops, on one machine or many, make each fire once;
one killed mid-fire leaves it made or not, and the next pass of any loop makes it.

Late fires: a fire up to ``misfire_grace_s`` late is on time; later, it was missed (no loop ran at
its time), and ``catchup`` decides: ``none`` skips every missed fire, ``latest`` makes the last one
and skips the others, ``all`` makes each, at most :data:`CATCHUP_MAX` (the older ones are skipped,
recorded as one). A fire more than ``starting_deadline_s`` late is skipped whatever the catch-up.
Skips are recorded with their reason, like runs. Time comes from ``clock`` (UTC seconds).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from luigi.task_register import Register

from nectar.passes import Failures, pause_until, run_passes
from nectar.registry.schedules import FireOutcome
from nectar.schedules.model import ScheduleRecord

if TYPE_CHECKING:
    from nectar.schedules.book import ScheduleBook

logger = logging.getLogger("nectar.schedules")

#: seconds between two passes when nothing is due sooner: how soon a change made anywhere is seen
PASS_INTERVAL = 0.5
#: missed fires one catch-up makes at most (``catchup: all``)
CATCHUP_MAX = 1000
#: fire times looked at in one pass of one schedule (a longer outage is caught up over several passes)
PASS_FIRES = 10 * CATCHUP_MAX
#: seconds before a schedule that could not fire (its store or registry down, its chain not importing) is tried again
RETRY_AFTER = 5.0


class ScheduleLoop:
    """Fires the schedules of a :class:`~nectar.schedules.book.ScheduleBook`; run by ``nectar clock`` and
    ``nectar serve``, as many at once as wanted."""

    def __init__(self, book: ScheduleBook, clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.clock = clock
        self.runs = book.runs
        self._seen_changes: int | None = None
        self._records: dict[str, ScheduleRecord] = {}
        #: the paused schedules, as of the last reload: a backfill's held fires of theirs are still queued
        self._paused: dict[str, ScheduleRecord] = {}
        #: (next fire time, schedule id, version): what is due next
        self._due: list[tuple[float, str, int]] = []
        #: what it says of a schedule that fails pass after pass (its traceback once, not every RETRY_AFTER)
        self.failures = Failures(logger, "schedule", "trying again", RETRY_AFTER)
        #: set by :meth:`serve_forever`'s stop: a pass ends after the fire being made, not after a long catch-up
        self.stopping = threading.Event()

    # --- the schedules as the registry has them ---

    def _reload(self) -> None:
        changes = self.runs.schedule_changes()
        if changes == self._seen_changes:
            return
        self._seen_changes = changes
        records = self.runs.schedules()
        self._records = {record.id: record for record in records if not record.paused}
        self._paused = {record.id: record for record in records if record.paused}
        self._due = []
        for record in self._records.values():
            self._push(record, record.cursor)

    def _push(self, record: ScheduleRecord, after: float) -> None:
        heapq.heappush(self._due, (record.spec.timing.next_after(after), record.id, record.version))

    def next_due(self) -> float | None:
        """The earliest fire time known to be due next (None without active schedules)."""
        return self._due[0][0] if self._due else None

    # --- one pass ---

    def tick(self) -> dict[str, int]:
        """Sync, reload, fire what is due, release held fires; answer how many fires became each state."""
        try:
            return self._pass()
        finally:
            # luigi keeps every task made in its instance cache, and each fire makes one: a clock grew without end
            Register.clear_instance_cache()

    def _pass(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        declared = self.book.sync()
        self._reload()
        now = self.clock()
        while self._due and self._due[0][0] <= now and not self.stopping.is_set():
            due = self._due_by(now, declared)
            try:  # another loop may have fired one: each starts from its row's cursor, the rows read at once
                rows = self.runs.schedules_of([schedule_id for _, schedule_id, _ in due]) if due else {}
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the registry cannot answer: each is tried again, as a failed fire
                for _, schedule_id, version in due:
                    self.failures.failed(schedule_id, exc)
                    heapq.heappush(self._due, (now + RETRY_AFTER, schedule_id, version))
                continue
            for k, (_, schedule_id, version) in enumerate(due):
                if self.stopping.is_set():  # the rest left due, as they were
                    for entry in due[k:]:
                        heapq.heappush(self._due, entry)
                    break
                self._fire(rows.get(schedule_id), schedule_id, version, now, counts)
        for schedule_id, held in self.runs.held().items():
            try:
                record, releasable = self._releasable(schedule_id, held, declared)
                if record is not None and releasable:
                    counts["released"] = counts.get("released", 0) + self.book.release(record, releasable)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self.failures.failed(schedule_id, exc)
        return counts

    def _due_by(self, now: float, declared: set[str]) -> list[tuple[float, str, int]]:
        """The heap's entries due by ``now`` of schedules to fire now, taken off it, one a schedule (another of the same
        schedule is left for the next round); those of a chain file that does not import now put back for later."""
        due: list[tuple[float, str, int]] = []
        later: list[tuple[float, str, int]] = []
        taken: set[str] = set()
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            _, schedule_id, version = entry
            record = self._records.get(schedule_id)
            if record is None or record.version != version:
                continue
            if record.source == "file" and schedule_id not in declared:
                # its chain file does not import now: it fires again (catching up) once the file is fixed
                later.append((now + RETRY_AFTER, schedule_id, version))
            elif schedule_id in taken:
                later.append(entry)
            else:
                taken.add(schedule_id)
                due.append(entry)
        for entry in later:
            heapq.heappush(self._due, entry)
        return due

    def _fire(
        self, fresh: ScheduleRecord | None, schedule_id: str, version: int, now: float, counts: dict[str, int]
    ) -> None:
        """Make the fires of ``fresh`` (its row as just read) due by ``now``, unless it changed, was paused or removed
        since the reload (then reloaded at the next pass); a failure tries it again after :data:`RETRY_AFTER`."""
        try:
            if fresh is None or fresh.version != version or fresh.paused:
                self._seen_changes = None  # reload at the next pass
                return
            self._push(fresh, self._fire_due(fresh, now, counts))
            self.failures.cleared(schedule_id)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the store or the registry cannot answer, a chain's code raised (its
            # SystemExit too: it ended the loop's thread, the schedule off the heap): this schedule is tried again
            self.failures.failed(schedule_id, exc)
            heapq.heappush(self._due, (now + RETRY_AFTER, schedule_id, version))

    def _releasable(
        self, schedule_id: str, held: list[tuple[float, bool]], declared: set[str]
    ) -> tuple[ScheduleRecord | None, list[tuple[float, bool]]]:
        """The schedule of ``held`` fire times and those of them this pass may queue: every one of an active
        schedule; of a paused one, a backfill's only (an explicit ask, queued ``max_active`` at a time as when it
        was made, where its schedule's own fires wait for the resume); none while its chain file does not import."""
        record = self._records.get(schedule_id)
        if record is None:
            record = self._paused.get(schedule_id)
            if record is None:
                return None, []  # removed, or made since the last reload: the next pass has it
            held = [(fire_time, backfilled) for fire_time, backfilled in held if backfilled]
        if record.source == "file" and schedule_id not in declared:
            return None, []  # its chain file does not import now: held until it does
        return record, held

    def _fire_due(self, record: ScheduleRecord, now: float, counts: dict[str, int]) -> float:
        """Make the fires of ``record`` due by ``now``; answer the cursor reached."""
        spec = record.spec
        due = spec.timing.fires_between(record.cursor, now, limit=PASS_FIRES)
        if not due:
            return max(record.cursor, now)
        missed = [t for t in due if now - t > spec.misfire_grace_s]
        if len(due) == PASS_FIRES and len(missed) > CATCHUP_MAX:
            # more fires follow: skip the older ones, the policy picks among the last CATCHUP_MAX and the rest
            return self._skip_missed(record, missed[:-CATCHUP_MAX], counts)
        on_time = due[len(missed) :]
        kept = {"none": [], "latest": missed[-1:], "all": missed[-CATCHUP_MAX:]}[spec.catchup]
        dropped = missed[: len(missed) - len(kept)]
        if dropped:
            self._skip_missed(record, dropped, counts)
        for fire_time in kept + on_time:
            if self.stopping.is_set():  # the fires made moved the cursor: the next loop goes on from there
                return record.cursor
            late = now - fire_time
            deadline = spec.starting_deadline_s
            if deadline is not None and late > deadline:
                outcome = FireOutcome(skip=f"missed its starting deadline ({deadline:g}s): {late:.0f}s late")
            else:
                outcome = self.book.prepare(record, fire_time)
            if self._record(record, fire_time, outcome, counts) == "stale":
                return record.cursor
        return due[-1]

    def _skip_missed(self, record: ScheduleRecord, dropped: list[float], counts: dict[str, int]) -> float:
        """Record missed fires skipped, as one fire at the first; answer the cursor reached."""
        spec = record.spec
        first, last = dropped[0], dropped[-1]
        what = "this missed fire" if len(dropped) == 1 else f"{len(dropped)} missed fires up to {spec.timing.iso(last)}"
        reason = f"{what}: no scheduler ran at its time (catchup: {spec.catchup})"
        state = self._record(record, first, FireOutcome(skip=reason), counts, cursor_to=last)
        return record.cursor if state == "stale" else last

    def _record(
        self, record: ScheduleRecord, fire_time: float, outcome: FireOutcome, counts: dict[str, int], **how: float
    ) -> str:
        spec = record.spec
        hold = spec.on_cap == "hold"
        state = self.runs.fire(
            record.id,
            record.version,
            fire_time,
            outcome,
            spec.cap,
            hold,
            now=self.clock(),
            max_pending=self.book.max_queue,
            **how,
        )
        counts[state] = counts.get(state, 0) + 1
        if state == "stale":
            self._seen_changes = None
        elif state != "exists":
            log = logger.info if state in ("queued", "done", "held") else logger.warning
            run_id = outcome.run.id if outcome.run else None
            reason = outcome.skip or (self._reason(record.id, fire_time) if state in ("skipped", "held") else None)
            log(
                "schedule %s fire %s: %s%s",
                record.id,
                spec.timing.iso(fire_time),
                state,
                f" ({reason})" if reason else "",
                extra={"run_id": run_id} if run_id and state == "queued" else {},
            )
        return state

    def _reason(self, schedule_id: str, fire_time: float) -> str | None:
        """Why the registry made a fire what it is (its cap, a full queue), as its history says."""
        latest = self.runs.fires(schedule_id, limit=1)
        return latest[0].reason if latest and latest[0].fire_time == fire_time else None

    # --- forever ---

    def serve_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set (:func:`~nectar.passes.run_passes`), waking when a fire is due."""
        self.stopping = stop
        run_passes(
            "firing schedules",
            self.tick,
            lambda: pause_until(self.next_due(), self.clock(), PASS_INTERVAL),
            stop,
            logger,
        )
