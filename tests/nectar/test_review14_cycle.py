"""review14 (round 60): the cycle of a reused attempt process, from its run's DONE to its next claim and hand-over,
for a real ``nectar worker`` (processes reused, as served) stopped or killed (-9) in it: no run charged an attempt
that never began, none claimed twice or by a stopping worker, no process holding two runs at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import alive, children, freeze
from nectar.config import Settings
from nectar.leases import HOST
from nectar.registry import Run, RunState
from nectar.service import Nectar
from nectar.spares import AHEAD
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_review13_claim import waits_for_its_run
from tests.nectar.test_spare import (  # noqa: F401 (fixtures)
    StartWorker,
    charged_once,
    ended,
    pid_of,
    quick,
    submit,
)

#: processes reused, as served (the suite's ``quick`` gives each run a fresh one)
REUSED = 1000


def reused(quick: Settings) -> Settings:  # noqa: F811
    return quick.replace(runs_per_process=REUSED)


def held_run(nectar: Nectar, gate: Path) -> str:
    run = nectar.submit("quick", "quick_chain", "HeldTask", {"gate": str(gate)}).run
    assert run is not None
    return run.id


def running(nectar: Nectar, run_id: str) -> Run:
    found = wait_until(lambda: (r := nectar.runs.get(run_id)) and r.state == RunState.RUNNING and r, timeout=60)
    assert isinstance(found, Run)
    return found


def claimed_by_a_reused_process_frozen(
    nectar: Nectar, worker: int, done: list[str], first: int
) -> tuple[str, int, list[int]]:
    """A run claimed in the name of a process back from its run (``host:pid.n``) while every spare of ``worker`` is
    stopped (SIGSTOP), the run unread: the run's id, that process and the stopped spares. ``done``: the runs ended
    so far, by id. The spares forked before a process came back are killed first (the worker forks others, newer),
    so that one back from its run is the oldest ready, the claims' choice; which one is ready as the test stops them,
    it cannot see from outside (a process back from its run may sleep in a read of its socket before it is set up
    again, waiting for its worker's word, as wt60-slots has it): a run claimed by a fresh spare is let run to its
    end, and another queued."""
    for n in range(first, first + 10):
        ran = {pid_of(run) for run in map(nectar.runs.get, done) if run is not None}
        back = [pid for pid in children(worker) if alive(pid) and pid in ran]
        forked = [pid for pid in children(worker) if alive(pid) and pid not in back]
        for pid in forked:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(map(alive, forked)), timeout=60)  # noqa: B023 (called at once)

        def all_waiting() -> list[int] | None:
            kids = [pid for pid in children(worker) if alive(pid) and pid not in forked]  # noqa: B023
            return kids if len(kids) >= AHEAD and all(map(waits_for_its_run, kids)) else None

        kids = wait_until(all_waiting, timeout=60)
        for pid in kids:
            freeze(pid)
        run_id = submit(nectar, n)
        claimed = running(nectar, run_id)
        assert claimed.worker is not None
        if "." in claimed.worker.rpartition(":")[2]:
            return run_id, pid_of(claimed), kids
        for pid in kids:
            os.kill(pid, signal.SIGCONT)
        assert ended(nectar, run_id).state == RunState.DONE
        done.append(run_id)
    raise AssertionError("no run was claimed by a process back from its run")


def test_a_draining_worker_claims_nothing_as_its_reused_process_ends_its_run(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """One slot, a held run in it and another queued; the worker is asked to stop (SIGTERM: drain) while the first
    is held, then the first ends (its process, reused, says it ended and stays). The worker claims nothing more: it
    exits, the queued run never claimed (PENDING, no attempt)."""
    settings = reused(quick)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=1)
    ended(nectar, submit(nectar, 1))  # its process back as a spare: the held run goes to a reused process, maybe
    gate = tmp_path / "gate"
    try:
        first = running(nectar, held_run(nectar, gate))
        queued = submit(nectar, 2)
        worker.send_signal(signal.SIGTERM)
        log = next(tmp_path.glob("worker-*.log"))
        wait_until(lambda: "stopping" in log.read_text(), timeout=60)
    finally:
        gate.touch()
    assert worker.wait(timeout=120) == 0
    assert ended(nectar, first.id).state == RunState.DONE
    after = nectar.runs.get(queued)
    assert after is not None and (after.state, after.attempt, after.worker) == (RunState.PENDING, 0, None), after
    assert nectar.runs.attempts(queued) == []


def test_a_worker_killed_after_its_claim_for_a_reused_process_before_it_read_the_run_costs_the_run_no_attempt(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
) -> None:
    """review13's first test, for a process back from its run (``host:pid.2``, its name as a run's holder changed
    with its runs): the worker claims in its name and hands it the run while it is stopped (SIGSTOP), and is killed
    (-9). The process, continued, dies of its worker's death or begins and is interrupted: either way the run is
    requeued uncounted and the next worker ends it DONE at its first attempt."""
    settings = reused(quick)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=1)
    run_id, _, kids = claimed_by_a_reused_process_frozen(nectar, worker.pid, [ended(nectar, submit(nectar, 11)).id], 12)
    try:
        worker.kill()
        worker.wait(timeout=60)
    finally:
        for pid in kids:
            os.kill(pid, signal.SIGCONT)
    wait_until(lambda: not any(map(alive, kids)), timeout=60)

    second = start_worker(settings, workers=1)
    run = ended(nectar, run_id)
    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None), history
    charged_once(nectar, run)
    assert second.poll() is None


def test_a_reused_process_killed_before_it_read_its_next_run_costs_the_run_no_attempt(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
) -> None:
    """The worker claims in the name of a process back from its run and hands it the run while it is stopped; the
    process is killed (-9) with the run unread. Its worker requeues the run uncounted and runs it in another."""
    settings = reused(quick)
    nectar = closed_at_end(Nectar(settings))
    worker = start_worker(settings, workers=1)
    run_id, back, kids = claimed_by_a_reused_process_frozen(
        nectar, worker.pid, [ended(nectar, submit(nectar, 21)).id], 22
    )
    os.kill(back, signal.SIGKILL)
    for pid in kids:
        if pid != back:
            os.kill(pid, signal.SIGCONT)
    run = ended(nectar, run_id)
    history = [(a.attempt, a.state, a.error) for a in nectar.runs.attempts(run.id)]
    assert (run.state, run.attempt, run.error) == (RunState.DONE, 1, None), history
    charged_once(nectar, run)
    assert pid_of(run) != back and worker.poll() is None


def test_a_burst_on_two_slots_holds_each_process_to_one_run_and_the_worker_to_two_at_a_time(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
) -> None:
    """60 quick runs queued at once to a worker of two slots, processes reused: each run ends DONE at its first
    attempt, and the registry's own times say that no process held a run before its last ended (a claim in the name
    of a process still in its previous run: its next run RUNNING in the registry while it is not running it) and
    that no more than two runs were RUNNING at once (a run's RUNNING from its claim to its end, as recorded)."""
    settings = reused(quick)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=2)
    ended(nectar, submit(nectar, 100))  # spares forked and ready: the burst meets a warm worker
    ids = [submit(nectar, n) for n in range(101, 161)]
    runs = [ended(nectar, run_id) for run_id in ids]
    for run in runs:
        charged_once(nectar, run)
    by_process: dict[int, list[tuple[float, float, str]]] = {}
    for run in runs:
        assert run.started_at is not None and run.finished_at is not None and run.worker is not None
        by_process.setdefault(pid_of(run), []).append((run.started_at, run.finished_at, run.worker))
    for pid, held in by_process.items():
        held.sort()
        for (_, end, name), (start, _, after) in zip(held, held[1:], strict=False):
            assert start >= end, f"process {pid}: {after} claimed at {start} before {name} ended at {end}"
    edges = sorted([(run.started_at or 0.0, 1) for run in runs] + [(run.finished_at or 0.0, -1) for run in runs])
    at_once = most = 0
    for _, step in edges:  # an end before a start at the same time
        at_once += step
        most = max(most, at_once)
    assert most <= 2, most


def test_a_process_takes_no_more_runs_than_runs_per_process_then_exits(
    quick: Settings,  # noqa: F811
    start_worker: StartWorker,
) -> None:
    """``NECTAR_RUNS_PER_PROCESS=2``, a worker of two slots, 40 quick runs queued at once: each ends DONE at its first
    attempt, no process holds more than two of them (named ``host:pid`` then ``host:pid.2``), processes are reused
    (some took two), and each that took two is gone once they all ended (it exits after its second run, never a
    spare again). Only ``NECTAR_RUNS_PER_PROCESS=1`` was tested before (test_reuse)."""
    settings = quick.replace(runs_per_process=2)
    nectar = closed_at_end(Nectar(settings))
    start_worker(settings, workers=2)
    ended(nectar, submit(nectar, 200))  # spares forked and ready: the burst meets a warm worker
    runs = [ended(nectar, run_id) for run_id in [submit(nectar, n) for n in range(201, 241)]]
    names: dict[int, list[str]] = {}
    for run in runs:
        charged_once(nectar, run)
        assert run.worker is not None
        names.setdefault(pid_of(run), []).append(run.worker)
    assert all(len(held) <= 2 for held in names.values()), names
    assert all(name in (f"{HOST}:{pid}", f"{HOST}:{pid}.2") for pid, held in names.items() for name in held), names
    twice = [pid for pid, held in names.items() if len(held) == 2]
    assert twice, names
    wait_until(lambda: not any(map(alive, twice)), timeout=60)
