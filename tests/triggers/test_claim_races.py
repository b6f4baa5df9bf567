"""Trigger loops racing: two loops in one process on one trigger never claim an object twice (one object a run, or
in batches), and a folder read while files land in key order loses none."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.triggers.loop import TriggerLoop
from tests.schedules.firing import EVERYTHING
from tests.triggers.racing import (  # noqa: F401 (fixtures)
    LANDED,
    LANDED_BATCH,
    Landing,
    Racing,
    landing,
    local_store,
    names,
    racing,
)


@pytest.mark.parametrize(("batch_size", "count"), [(None, 300), (7, 100)], ids=["one-a-run", "batches-of-7"])
def test_two_loops_racing_in_one_process_claim_each_object_once(
    landing: Landing,  # noqa: F811
    racing: Callable[[], Racing],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    batch_size: int | None,
    count: int,
) -> None:
    """Objects land in small bursts while two loops poll the same trigger back to back: each object is claimed
    once, in one run's ``objects`` (groups of at most ``batch_size``), and no claim failed on the way."""
    caplog.set_level(logging.WARNING, logger="nectar.triggers")
    store = local_store(tmp_path / "landing")
    if batch_size is None:
        trigger_id = landing.trigger(LANDED, store.prefix, param="path")
    else:
        trigger_id = landing.trigger(LANDED_BATCH, store.prefix, param="paths", batch_size=batch_size)
    keys = names(count)
    with racing() as race:
        wanted = []
        for start in range(0, count, 5):
            wanted += [store.put(name) for name in keys[start : start + 5]]
            landing.wait_claimed(trigger_id, start, f"the objects before {keys[start]} to be claimed")
        landing.wait_claimed(trigger_id, count, "every object to be claimed")
    assert race.failures == [] and [record.getMessage() for record in caplog.records] == []
    claims = landing.runs.trigger_objects(trigger_id, limit=EVERYTHING)
    assert len(claims) == count and {claim.state for claim in claims} == {"queued"}
    runs = landing.triggered_runs(trigger_id)
    in_runs = [uri for run in runs for uri in run.objects or ()]
    assert sorted(in_runs) == sorted(wanted), "an object in no run, or in two"
    assert max(len(run.objects or ()) for run in runs) <= (batch_size or 1)
    assert sum(states.get("queued", 0) for states in race.polls) == len(runs), "a run claimed twice"


#: files already in the folder: more than one ``getdents`` call's worth (~800 such names), so that reading the folder
#: is not one atomic step of the kernel
ALREADY = 1_000


@pytest.mark.parametrize("registry", ["sqlite"], indirect=True)
def test_a_folder_read_while_files_land_in_key_order_loses_none(landing: Landing, tmp_path: Path) -> None:  # noqa: F811
    """Reading a big folder takes several system calls, and a file landing between two of them may be missed while
    a later one is given (the folder's order is not the key order): a poll that moved its cursor past what it
    was given would lose the missed file for good. Files land in key order, as fast as they can, while a loop
    polls back to back: each is claimed."""
    store = local_store(tmp_path / "landing")
    keys = names(ALREADY + 2_000)
    for name in keys[:ALREADY]:
        store.put(name)
    trigger_id = landing.trigger(LANDED_BATCH, store.prefix, param="paths", batch_size=500)  # cheap claims: many polls
    loop = TriggerLoop(landing.nectar.triggers)
    loop.tick()
    landed = threading.Event()

    def land_all() -> None:
        for name in keys[ALREADY:]:
            store.put(name)
        landed.set()

    writer = threading.Thread(target=land_all)
    writer.start()
    while not landed.is_set():
        loop._due.clear()
        loop.tick()
    writer.join()
    loop._due.clear()
    loop.tick()
    claimed = {obj.object_key for obj in landing.runs.trigger_objects(trigger_id, limit=EVERYTHING)}
    assert sorted(set(keys[ALREADY:]) - claimed) == [], "files landed in key order and never claimed"
