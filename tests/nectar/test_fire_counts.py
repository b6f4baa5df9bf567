"""Fires and claimed objects by state, their lags and the triggers' runs: counted by the database, equal to a scan.

Each test runs against SQLite and a real PostgreSQL: every path that writes ``fires`` or ``trigger_objects``, an
upgrade from version 9 that fills the counts from the rows there, and clocks firing the same times at once.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from nectar.registry import Run, RunState
from nectar.registry.fire_counts import DETECTION_BOUNDS, LAG_BOUNDS
from nectar.registry.schedules import FireOutcome
from nectar.registry.schema import values
from nectar.registry.triggers import Seen, TriggerCounts
from nectar.registry.triggers_sql import SqlTriggers
from nectar.schedules.model import FIRE_STATES, ScheduleRecord, ScheduleSpec
from nectar.triggers.model import OBJECT_STATES, TriggerRecord, TriggerSpec
from tests.nectar import test_queue_count, test_run_counts
from tests.nectar.test_queue_count import every_change, new_run, open_store

#: the registry of each test: a SQLite file, and a real PostgreSQL database
where = test_queue_count.where
SPEC = ScheduleSpec.from_definition({"task": "t/c_chain/ATask", "interval_s": 60})
WATCH = TriggerSpec.from_definition({"task": "t/c_chain/ATask", "prefix": "s3://bucket/in/", "param": "n"})


def scan_lags(table: str, lag: str, where: str, bounds: tuple[float, ...]) -> str:
    """What /metrics read before the counts: every row of ``table`` with a lag, by bucket (the old ``_lags``)."""
    within = "".join(f", SUM(CASE WHEN {lag} <= {bound!r} THEN 1 ELSE 0 END) AS b{i}" for i, bound in enumerate(bounds))
    return f"SELECT COUNT(*) AS n, SUM({lag}) AS s{within} FROM {table} WHERE {where}"


#: each trigger's counts as its list read them before they were counted: every claimed object joined to its run
TRIGGER_SCAN = (
    "SELECT o.trigger_id AS trigger_id, COUNT(*) AS objects, COUNT(DISTINCT o.run_id) AS runs, "
    "SUM(CASE WHEN o.state = 'skipped' THEN 1 ELSE 0 END) AS skipped, "
    "SUM(CASE WHEN r.state IN ('PENDING', 'RUNNING', 'WAITING') THEN 1 ELSE 0 END) AS waiting "
    "FROM trigger_objects o LEFT JOIN runs r ON r.id = o.run_id GROUP BY o.trigger_id"
)
SCANS = {
    "fires": "SELECT state, COUNT(*) AS n FROM fires GROUP BY state",
    "objects": "SELECT state, COUNT(*) AS n FROM trigger_objects GROUP BY state",
    "fire lags": scan_lags("fires", "queued_at - fire_time", "queued_at IS NOT NULL", LAG_BOUNDS),
    "object lags": scan_lags(
        "trigger_objects", "recorded_at - modified", "state = 'queued' AND modified IS NOT NULL", DETECTION_BOUNDS
    ),
}


def scanned(runs: SqlTriggers) -> dict[str, Any]:
    """Fires and objects by state, and their lags, as a scan of every row finds them."""
    found = runs._read(
        lambda db: {name: list(map(values, runs._exec(db, text).fetchall())) for name, text in SCANS.items()}
    )
    lags = {}
    for name in ("fire lags", "object lags"):
        n, total, *within = found[name][0]
        lags[name] = (tuple(int(k or 0) for k in within), int(n), float(total or 0.0))
    return {
        "fires": {state: int(n) for state, n in found["fires"]},
        "objects": {state: int(n) for state, n in found["objects"]},
        **lags,
    }


def same_lags(counted: tuple[tuple[int, ...], int, float], scan: tuple[tuple[int, ...], int, float], name: str) -> None:
    assert counted[:2] == scan[:2], f"the {name} drifted from the rows"
    assert counted[2] == pytest.approx(scan[2], abs=1e-6), f"the {name}' total drifted from the rows"


def counted_right(runs: SqlTriggers) -> dict[str, Any]:
    """The counts the database keeps, checked against the old scans (the triggers' runs: ``trigger_counts``)."""
    scan = scanned(runs)
    assert set(scan["fires"]) <= set(FIRE_STATES) and set(scan["objects"]) <= set(OBJECT_STATES)
    assert runs.fire_counts() == {state: scan["fires"].get(state, 0) for state in FIRE_STATES}, "fires drifted"
    assert runs.object_counts() == {state: scan["objects"].get(state, 0) for state in OBJECT_STATES}, "objects drifted"
    same_lags(runs.fire_lags(), scan["fire lags"], "fire lags")
    same_lags(runs.object_lags(), scan["object lags"], "detection lags")
    assert runs.trigger_runs() == sum(counted.runs for counted in runs.trigger_counts().values()), "trigger runs"
    rows = runs._read(lambda db: runs._exec(db, TRIGGER_SCAN).fetchall())
    each = {
        row["trigger_id"]: TriggerCounts(*(int(row[k] or 0) for k in TriggerCounts.__annotations__)) for row in rows
    }
    assert runs.trigger_counts() == each, "a trigger's counts drifted from its objects"
    for trigger_id, counted in each.items():
        assert runs.trigger_counts(trigger_id) == {trigger_id: counted}
    return scan


def both_right(runs: SqlTriggers) -> int:
    """The fires' and objects' counts and the runs' (:mod:`tests.nectar.test_run_counts`); the queue's count."""
    counted_right(runs)
    return test_run_counts.counted_right(runs)


def queued(n: int, schedule_id: str, fire_time: float, state: RunState = RunState.PENDING) -> FireOutcome:
    return FireOutcome(run=dataclasses.replace(new_run(n, state=state), schedule_id=schedule_id, fire_time=fire_time))


def making(run: Run) -> Callable[[Sequence[Seen]], FireOutcome]:
    """A claim's outcome: ``run``, for whichever objects it claims."""
    return lambda fresh: FireOutcome(run=run)


def ended(runs: SqlTriggers, run_id: str | None) -> None:
    claimed = runs.claim("w", run_id=run_id)
    assert claimed is not None and runs.complete(claimed.id, claimed.attempt)


def test_the_counts_follow_every_path_of_the_walk_of_runs(where: str) -> None:
    """The walk of every change of a run (fires and claims among them), both counts checked after each step."""
    every_change(open_store(where), both_right)


def test_the_counts_follow_every_write_of_a_fire(where: str) -> None:
    runs = open_store(where)
    now = time.time()
    for sid in ("s1", "s2"):
        assert runs.add_schedule(ScheduleRecord(sid, "api", SPEC, 1, False, now, now, now))
    counted_right(runs)
    # a fire of each outcome, queued ones with lags in different buckets (the loop's clock: ``now``)
    assert runs.fire("s1", 1, 1000.0, queued(1, "s1", 1000.0), now=1000.03) == "queued"
    assert runs.fire("s1", 1, 1060.0, queued(2, "s1", 1060.0), now=1062.5) == "queued"
    assert runs.fire("s1", 1, 1120.0, FireOutcome(), now=1121.0) == "done"
    assert runs.fire("s1", 1, 1180.0, FireOutcome(skip="too late"), now=1181.0) == "skipped"
    assert runs.fire("s1", 1, 1180.0, queued(3, "s1", 1180.0), now=1182.0) == "exists"
    assert counted_right(runs)["fires"] == {"queued": 2, "done": 1, "skipped": 1}
    # a bounded schedule: its second fire held while the first runs, then released (queued) once it ended
    first = runs.fire("s2", 1, 2000.0, queued(10, "s2", 2000.0), cap=1, now=2000.2)
    assert first == "queued" and runs.fire("s2", 1, 2060.0, queued(11, "s2", 2060.0), cap=1, now=2060.1) == "held"
    assert counted_right(runs)["fires"]["held"] == 1
    assert runs.release("s2", 1, 2060.0, queued(11, "s2", 2060.0), cap=1, now=2070.0) == "held"
    ended(runs, runs.fires("s2")[-1].run_id)
    assert runs.release("s2", 1, 2060.0, queued(11, "s2", 2060.0), cap=1, now=2070.0) == "queued"
    assert counted_right(runs)["fires"] == {"queued": 4, "done": 1, "skipped": 1}
    # a backfill holds a skipped fire again (its row changed in place) and a new time; a removal deletes the held
    assert runs.hold("s1", 1, [1180.0, 1240.0, 1000.0], "b1") == [1180.0, 1240.0]
    assert counted_right(runs)["fires"] == {"queued": 4, "done": 1, "held": 2}
    assert runs.release("s1", 1, 1240.0, queued(4, "s1", 1240.0), cap=None, now=1300.0) == "queued"
    counted_right(runs)
    assert runs.remove_schedule("s1") and counted_right(runs)["fires"] == {"queued": 5, "done": 1}
    # a file schedule's held fires go with it when its chain no longer declares it
    assert runs.sync_declared([("f1", SPEC)], [], now)
    assert runs.hold("f1", 1, [3000.0, 3060.0], "b2") == [3000.0, 3060.0] and counted_right(runs)
    assert runs.sync_declared([], [], now) and counted_right(runs)["fires"] == {"queued": 5, "done": 1}
    # a queued fire whose run waited and was skipped at its deadline is recorded skipped, its lag kept
    assert runs.fire("s2", 1, 2120.0, queued(12, "s2", 2120.0), now=2121.0) == "queued"
    waits = runs.claim("w", run_id=runs.fires("s2", limit=1)[0].run_id)
    assert waits is not None and runs.wait(waits.id, 1, ["s3://b/x"], time.time() + 60, 0.0, "x is missing")
    assert runs.end_wait(waits.id, "x never came", skip=True) == RunState.CANCELLED
    scan = counted_right(runs)
    assert scan["fires"] == {"queued": 5, "done": 1, "skipped": 1} and scan["fire lags"][1] == 6
    assert runs.fire_lags()[0] == (1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 6)  # 0.03, 0.2, 1, 2.5, 10 and 60 s


def test_the_counts_follow_every_write_of_a_claimed_object(where: str) -> None:
    runs = open_store(where)
    now = 5000.0
    for tid in ("t1", "t2"):
        assert runs.add_trigger(TriggerRecord(tid, "api", WATCH, 1, False, "", now, now))

    def claim(tid: str, seen: list[Seen], outcome: FireOutcome, at: float) -> str | None:
        made = runs.claim_objects(tid, 1, seen, lambda fresh: outcome, at)
        counted_right(runs)
        return made.run_id

    one = claim("t1", [Seen("in/a", "v1", now - 0.3)], FireOutcome(run=new_run(1)), now)
    # three objects, one run: the pair counted once, each object's lag in its buckets (one without a change time)
    group = [Seen("in/b", "v1", now - 12.5), Seen("in/c", "v1", now - 40.0), Seen("in/d", "v1")]
    three = claim("t1", group, FireOutcome(run=new_run(2)), now + 1)
    # a later object joins the active run of its key (the pair already counted); another trigger's joins it too
    assert claim("t1", [Seen("in/e", "v1", now)], FireOutcome(run=new_run(2)), now + 2) == three
    assert claim("t2", [Seen("in/e", "v1", now)], FireOutcome(run=new_run(2)), now + 2) == three
    claim("t1", [Seen("in/f", "v1", now)], FireOutcome(), now + 3)
    claim("t1", [Seen("in/g", "v1", now)], FireOutcome(skip="cannot be made"), now + 3)
    assert claim("t1", [Seen("in/a", "v1", now)], FireOutcome(run=new_run(3)), now + 4) is None  # claimed already
    assert runs.object_counts() == {"queued": 6, "done": 1, "skipped": 1} and runs.trigger_runs() == 3
    assert runs.object_lags() == ((0, 1, 1, 3, 3, 3, 3, 4, 4, 5, 5, 5), 5, pytest.approx(0.3 + 13.5 + 41 + 2 + 2))
    # a run that waited and was skipped at its deadline: its objects are recorded skipped, their lags no longer
    # counted; the pairs stay (the run was made)
    ended(runs, one)
    waits = runs.claim("w", run_id=three)
    assert waits is not None and runs.wait(waits.id, 1, ["s3://b/x"], time.time() + 60, 0.0, "x is missing")
    assert runs.end_wait(waits.id, "x never came", skip=True) == RunState.CANCELLED
    scan = counted_right(runs)
    assert scan["objects"] == {"queued": 1, "done": 1, "skipped": 6} and runs.trigger_runs() == 3
    # no path deletes an object yet; one deleted by hand takes its pair with its last object
    with runs._db() as db:
        runs._exec(db, "DELETE FROM trigger_objects WHERE trigger_id = 't2'")
    counted_right(runs)
    assert runs.trigger_runs() == 2


def downgrade_to_9(where: str) -> None:
    """The registry as version 9 left it: runs counted, fires and objects not."""
    tables = ("fire_counts", "object_counts", "trigger_runs")
    if where.startswith("postgresql:"):
        with psycopg.connect(where, autocommit=True) as pg:
            for table, function in (("fires", "nectar_count_fires"), ("trigger_objects", "nectar_count_objects")):
                pg.execute(f"DROP TRIGGER {table}_counted ON {table}")
                pg.execute(f"DROP FUNCTION {function}()")
            for table in tables:
                pg.execute(f"DROP TABLE {table}")
            pg.execute("UPDATE nectar_schema SET version = 7")  # PostgreSQL records schema 9 as 7
        return
    with sqlite3.connect(where) as lite:
        names = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('fires', 'trigger_objects')"
        for (name,) in lite.execute(names).fetchall():
            lite.execute(f"DROP TRIGGER {name}")
        for table in tables:
            lite.execute(f"DROP TABLE {table}")
        lite.execute("PRAGMA user_version = 9")
    lite.close()


def test_a_registry_of_schema_9_counts_its_fires_and_objects_when_it_upgrades(where: str) -> None:
    runs = open_store(where)
    assert runs.add_schedule(ScheduleRecord("s1", "api", SPEC, 1, False, 0.0, 0.0, 0.0))
    assert runs.add_trigger(TriggerRecord("t1", "api", WATCH, 1, False, "", 0.0, 0.0))
    assert runs.fire("s1", 1, 100.0, queued(1, "s1", 100.0), now=100.2) == "queued"
    assert runs.fire("s1", 1, 160.0, FireOutcome(skip="late"), now=170.0) == "skipped"
    assert runs.hold("s1", 1, [220.0], "b1") == [220.0]
    seen = [Seen("in/a", "v1", 90.0), Seen("in/b", "v1", 95.0)]
    assert runs.claim_objects("t1", 1, seen, lambda fresh: FireOutcome(run=new_run(2)), 101.0).state == "queued"
    assert runs.claim_objects("t1", 1, [Seen("in/c", "v1")], lambda fresh: FireOutcome(), 102.0).state == "done"
    before = scanned(runs)
    downgrade_to_9(where)

    upgraded = open_store(where)
    assert counted_right(upgraded) == before
    assert upgraded.fire_counts() == {"queued": 1, "done": 0, "skipped": 1, "held": 1}
    assert upgraded.trigger_runs() == 1 and upgraded.object_lags()[1] == 2
    assert upgraded.release("s1", 1, 220.0, queued(3, "s1", 220.0), cap=None, now=221.0) == "queued"
    assert upgraded.claim_objects("t1", 1, [Seen("in/d", "v1", 100.0)], lambda f: FireOutcome(run=new_run(2)), 103.0)
    counted_right(upgraded)
    assert upgraded.fire_counts()["queued"] == 2 and upgraded.trigger_runs() == 1


def test_a_registry_of_schema_10_counts_each_triggers_objects_when_it_upgrades(where: str) -> None:
    runs = open_store(where)
    for tid in ("t1", "t2"):
        assert runs.add_trigger(TriggerRecord(tid, "api", WATCH, 1, False, "", 0.0, 0.0))
    seen = [Seen("in/a", "v1", 90.0), Seen("in/b", "v1", 95.0)]
    assert runs.claim_objects("t1", 1, seen, lambda fresh: FireOutcome(run=new_run(1)), 101.0).state == "queued"
    assert runs.claim_objects("t1", 1, [Seen("in/c", "v1")], lambda f: FireOutcome(skip="no"), 102.0).state
    assert runs.claim_objects("t2", 1, [Seen("in/a", "v1")], lambda fresh: FireOutcome(run=new_run(2)), 103.0).state
    before = runs.trigger_counts()
    if where.startswith("postgresql:"):
        with psycopg.connect(where, autocommit=True) as pg:
            pg.execute("DROP TABLE trigger_counts")
            pg.execute("UPDATE nectar_schema SET version = 8")  # PostgreSQL records schema 10 as 8
    else:
        with sqlite3.connect(where) as lite:
            lite.execute("DROP TABLE trigger_counts")
            lite.execute("PRAGMA user_version = 10")
        lite.close()

    upgraded = open_store(where)
    assert (
        upgraded.trigger_counts()
        == before
        == {
            "t1": TriggerCounts(objects=3, runs=1, skipped=1, waiting=2),
            "t2": TriggerCounts(objects=1, runs=1, skipped=0, waiting=1),
        }
    )
    counted_right(upgraded)


def test_the_trigger_list_reads_no_claimed_object(tmp_path: Path) -> None:
    """The list's counts come from the rows the database keeps, not from a scan of every object ever claimed (at
    100,000 objects the scan took ~0.3 s per list, and grew with every object)."""
    runs = open_store(str(tmp_path / "registry.db"))
    assert runs.add_trigger(TriggerRecord("t1", "api", WATCH, 1, False, "", 0.0, 0.0))
    assert runs.claim_objects("t1", 1, [Seen("in/a", "v1")], lambda fresh: FireOutcome(run=new_run(1)), 1.0).state
    tables: set[str] = set()

    def note(action: int, table: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table:
            tables.add(table)
        return sqlite3.SQLITE_OK

    runs._read(lambda db: db.set_authorizer(note))  # the thread's own connection, which its next reads use
    assert runs.trigger_counts() == {"t1": TriggerCounts(objects=1, runs=1, skipped=0, waiting=1)}
    assert runs.trigger_counts("t1") == {"t1": TriggerCounts(objects=1, runs=1, skipped=0, waiting=1)}
    assert tables and "trigger_objects" not in tables, tables


#: clocks firing the same schedule's times at once, the times each tries, and the submitters beside them
CLOCKS, TIMES, SUBMITTERS = 3, 12, 2


def test_clocks_firing_the_same_times_at_once_keep_the_counts_right(where: str) -> None:
    """Three clocks claim the same fire times (queued, done, skipped by turns), two trigger loops the same objects,
    while runs are submitted and ended: every one ends (no deadlock between the counted rows on PostgreSQL), each
    time is fired once, and the counts equal a scan."""
    stores = [open_store(where) for _ in range(CLOCKS + 2 + SUBMITTERS)]
    assert stores[0].add_schedule(ScheduleRecord("s1", "api", SPEC, 1, False, 0.0, 0.0, 0.0))
    assert stores[0].add_trigger(TriggerRecord("t1", "api", WATCH, 1, False, "", 0.0, 0.0))
    barrier = threading.Barrier(len(stores))
    answers: list[str] = []

    def outcome(k: int) -> FireOutcome:
        return (queued(1000 + k, "s1", 60.0 * k), FireOutcome(), FireOutcome(skip="late"))[k % 3]

    def clock(runs: SqlTriggers) -> None:
        for k in range(TIMES):
            answers.append(runs.fire("s1", 1, 60.0 * k, outcome(k), now=60.0 * k + 0.01 * k))

    def poller(runs: SqlTriggers) -> None:
        for k in range(TIMES):
            seen = [Seen(f"in/{k}-{i}", "v1", 10.0 * k) for i in range(3)]
            runs.claim_objects("t1", 1, seen, making(new_run(2000 + k)), 10.0 * k + 1)

    def submitter(runs: SqlTriggers) -> None:
        for k in range(TIMES):
            ended(runs, runs.submit(new_run(3000 + 100 * stores.index(runs) + k))[0].id)

    def start(work: Callable[[SqlTriggers], None], runs: SqlTriggers) -> None:
        barrier.wait(timeout=60)
        work(runs)

    works = [clock] * CLOCKS + [poller] * 2 + [submitter] * SUBMITTERS
    with ThreadPoolExecutor(len(stores)) as pool:
        for done in [pool.submit(start, work, runs) for work, runs in zip(works, stores, strict=True)]:
            done.result(timeout=120)  # raises what the thread raised, or that it never ended
    assert sorted(answers).count("exists") == (CLOCKS - 1) * TIMES, answers  # each time fired once
    both_right(stores[0])
    scan = counted_right(stores[0])
    assert scan["fires"] == {"queued": TIMES // 3, "done": TIMES // 3, "skipped": TIMES // 3}
    assert scan["objects"] == {"queued": 3 * TIMES} and stores[0].trigger_runs() == TIMES
