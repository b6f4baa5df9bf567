"""Objects landing while the run queue is at its bound (``NECTAR_MAX_QUEUE``): left unclaimed, said, claimed later."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.registry import Run
from nectar.registry.model import RunFilter, RunState
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from nectar.triggers.model import TriggerRecord
from tests.schedules.test_policies import end_run

# the bounded registry of either kind the schedules' test uses; the chain, folders and service of the core tests
from tests.schedules.test_queue_full import BOUND, settings  # noqa: F401  (fixtures)
from tests.triggers.test_core import (  # noqa: F401  (fixtures)
    api_trigger,
    declared,
    definition,
    land,
    landing,
    nectar,
    objects_of,
)


def submit(service: Nectar, path: str) -> str:
    """A client's run of the trigger's task; its id."""
    submitted = service.submit("ingest", "landing_chain", "LoadFileTask", {"path": path})
    assert submitted.run is not None and submitted.created
    return submitted.run.id


def pending(service: Nectar) -> list[Run]:
    runs, _ = service.runs.find(RunFilter(state=RunState.PENDING), limit=100)
    return runs


def poll(loop: TriggerLoop, caplog: pytest.LogCaptureFixture) -> list[str]:
    """One pass with every trigger due; the WARNING lines it logged."""
    loop._due.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nectar.triggers"):
        loop.tick()
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_objects_landing_with_the_queue_full_wait_unclaimed_saying_why_and_are_claimed_once_there_is_room(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queue at its bound when objects land: none is claimed (none recorded skipped, no run past the bound),
    the poll logs why at WARNING; as runs leave the queue, later polls claim them in order, each once."""
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND)]
    trigger_id = api_trigger(nectar, landing, existing="all")
    paths = land(landing, "a.csv", "b.csv")
    loop = TriggerLoop(nectar.triggers)
    (warned,) = poll(loop, caplog)
    assert trigger_id in warned and f"the run queue is full: {BOUND} runs are queued" in warned
    assert objects_of(nectar, trigger_id) == [] and nectar.runs.trigger_objects(trigger_id) == []
    assert len(pending(nectar)) == BOUND
    poll(loop, caplog)  # still full: still nothing claimed, nothing lost
    assert nectar.runs.trigger_objects(trigger_id) == []
    end_run(nectar, queued[0])
    assert poll(loop, caplog) == []  # room for one: the first object, then full again (said once, as it began)
    assert objects_of(nectar, trigger_id) == [(paths[0],)]
    end_run(nectar, queued[1])
    assert poll(loop, caplog) == []
    assert objects_of(nectar, trigger_id) == [(paths[0],), (paths[1],)]
    assert sorted(o.state for o in nectar.runs.trigger_objects(trigger_id)) == ["queued", "queued"]
    assert len(pending(nectar)) == BOUND
    poll(loop, caplog)
    assert objects_of(nectar, trigger_id) == [(paths[0],), (paths[1],)]


def test_an_object_whose_run_joins_an_active_run_is_claimed_with_the_queue_full(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An object whose run a client already queued adds nothing to the queue: it joins that run, full or not."""
    trigger_id = api_trigger(nectar, landing, existing="all")
    joined = submit(nectar, str(landing / "a.csv"))
    submit(nectar, "/elsewhere/0.csv")  # the queue full with the joined run
    land(landing, "a.csv")
    assert poll(TriggerLoop(nectar.triggers), caplog) == []
    (claimed,) = nectar.runs.trigger_objects(trigger_id)
    assert (claimed.state, claimed.run_id) == ("queued", joined)


def test_a_first_poll_cut_short_by_the_full_queue_never_takes_what_was_there_before_the_trigger(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``existing: new``: the first poll claims a new object, then finds the queue full. Objects there before the
    trigger was made, with keys between the new ones, stay untaken however many polls it takes to start."""
    old = land(landing, "b.csv", "d.csv")
    made = time.time()
    for path in old:
        os.utime(path, (made - 60, made - 60))
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND - 1)]  # room for one run
    trigger_id = api_trigger(nectar, landing)
    new = land(landing, "a.csv", "c.csv", "e.csv")
    loop = TriggerLoop(nectar.triggers)
    (warned,) = poll(loop, caplog)  # a.csv claimed, then the queue full before c.csv
    assert "the run queue is full" in warned
    assert objects_of(nectar, trigger_id) == [(new[0],)]
    end_run(nectar, queued[0])
    end_run(nectar, nectar.runs.trigger_objects(trigger_id)[0].run_id or "")
    poll(loop, caplog)
    assert objects_of(nectar, trigger_id) == [(new[0],), (new[1],), (new[2],)]
    claimed = {o.object_key for o in nectar.runs.trigger_objects(trigger_id)}
    assert claimed == {"a.csv", "c.csv", "e.csv"}
    started = nectar.runs.trigger(trigger_id)
    assert started is not None and started.cursor == "e.csv"


COUNTED_CHAIN = '''
import luigi
from nectar import NectarTask


class CountedTask(NectarTask):
    """A landed file whose output check is counted, a line a call."""

    path = luigi.Parameter()

    def complete(self):
        with open({counter!r}, "a") as out:
            out.write(self.path + "\\n")
        return super().complete()
'''


def test_a_poll_with_the_queue_full_prepares_nothing_and_claims_once_there_is_room(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bound is read before an object's run is prepared: polls with the queue full check no output (nor list a
    pre-load's place), warn as the queue is first found full and keep the cursor before the object; with room, it is
    prepared once and claimed."""
    counter = tmp_path / "complete-calls.txt"
    write_chain("ingest/counted_chain", COUNTED_CHAIN.format(counter=str(counter)))
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND)]
    definition = {"task": "ingest/counted_chain/CountedTask", "prefix": str(landing), "param": "path"}
    trigger_id = nectar.triggers.create({**definition, "existing": "all"}).id
    (path,) = land(landing, "a.csv")
    loop = TriggerLoop(nectar.triggers)
    for said in range(3):
        warned = poll(loop, caplog)
        assert [f"the run queue is full: {BOUND} runs are queued" in line for line in warned] == [True][said:]
        assert not counter.exists()  # no output checked
        record = nectar.runs.trigger(trigger_id)
        assert record is not None and record.cursor == ""  # still before the object
    end_run(nectar, queued[0])
    assert poll(loop, caplog) == []
    assert counter.read_text().splitlines() == [path]
    assert objects_of(nectar, trigger_id) == [(path,)]


def test_a_first_poll_cut_short_again_and_again_reads_no_more_than_up_to_its_next_object(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
) -> None:
    """``existing: new``, the queue full after the first poll's first claim: each poll after goes on after the last
    object claimed, and with the queue at its bound reads the place only as far as the group it cannot queue (here
    the root folder, the last claim's and that object's), not each of the 20 folders there before the trigger,
    twice; once there is room, the poll ends the listing and starts the cursor, nothing of before the trigger
    taken."""
    made = time.time()
    for old in land(landing, *(f"d{n:02}/{m}.csv" for n in range(20) for m in range(5))):
        os.utime(old, (made - 60, made - 60))
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND - 1)]  # room for one run
    trigger_id = api_trigger(nectar, landing)
    new = land(landing, "a0/x.csv", "a1/x.csv", "e/x.csv")
    first = nectar.triggers.poll(record(nectar, trigger_id))
    assert first.full is not None and objects_of(nectar, trigger_id) == [(new[0],)]
    for _ in range(3):
        again = nectar.triggers.poll(record(nectar, trigger_id))
        assert again.full is not None and objects_of(nectar, trigger_id) == [(new[0],)]
        assert again.stats.requests == 3, again.stats  # the root folder, a0/ (the last claim) and a1/
        assert record(nectar, trigger_id).cursor is None
    end_run(nectar, queued[0])
    end_run(nectar, nectar.runs.trigger_objects(trigger_id)[0].run_id or "")
    done = nectar.triggers.poll(record(nectar, trigger_id))
    assert done.full is None and objects_of(nectar, trigger_id) == [(new[0],), (new[1],), (new[2],)]
    assert record(nectar, trigger_id).cursor == "e/x.csv"


def record(nectar: Nectar, trigger_id: str) -> TriggerRecord:  # noqa: F811
    found = nectar.runs.trigger(trigger_id)
    assert found is not None
    return found


def test_a_first_poll_cut_short_then_its_glob_changed_takes_the_new_globs_objects_before_the_last_claim(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
) -> None:
    """``existing: new``, the first poll cut short by the full queue after one claim (``b/x.csv``), then the glob
    edited (``**/*.csv`` -> ``**/*``): the object that landed after the trigger and that only the new glob takes,
    ``a/x.txt``, sorts before that claim. The next first poll lists from the place's start for the new definition,
    not after the old one's last claim: it is claimed (on main: never, the cursor started past it)."""
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND - 1)]  # room for one run
    trigger_id = api_trigger(nectar, landing, glob="**/*.csv")
    txt, first_csv, second_csv = land(landing, "a/x.txt", "b/x.csv", "c/x.csv")
    first = nectar.triggers.poll(record(nectar, trigger_id))
    assert first.full is not None and objects_of(nectar, trigger_id) == [(first_csv,)]
    nectar.triggers.change(trigger_id, {"glob": "**/*"})
    assert record(nectar, trigger_id).cursor is None  # not started: the next poll is a first one still
    end_run(nectar, queued[0])
    end_run(nectar, nectar.runs.trigger_objects(trigger_id)[0].run_id or "")
    done = nectar.triggers.poll(record(nectar, trigger_id))
    assert done.full is None
    assert objects_of(nectar, trigger_id) == [(txt,), (first_csv,), (second_csv,)]


def test_a_declared_trigger_whose_glob_changed_after_a_cut_short_first_poll_takes_the_new_globs_objects(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
) -> None:
    """The same for a trigger declared in a chain file, its new definition synced from the files (on main: the
    object only the new glob takes, before the old one's last claim, never claimed)."""
    before = nectar.triggers.check({**definition(landing), "glob": "**/*.csv"})
    after = nectar.triggers.check({**definition(landing), "glob": "**/*"})
    nectar.runs.sync_declared_triggers([("declared-csv", before)], [], time.time())
    queued = [submit(nectar, f"/elsewhere/{n}.csv") for n in range(BOUND - 1)]  # room for one run
    txt, first_csv, second_csv = land(landing, "a/x.txt", "b/x.csv", "c/x.csv")
    first = nectar.triggers.poll(record(nectar, "declared-csv"))
    assert first.full is not None and objects_of(nectar, "declared-csv") == [(first_csv,)]
    nectar.runs.sync_declared_triggers([("declared-csv", after)], [], time.time())
    assert record(nectar, "declared-csv").version == 2 and record(nectar, "declared-csv").cursor is None
    end_run(nectar, queued[0])
    end_run(nectar, nectar.runs.trigger_objects("declared-csv")[0].run_id or "")
    done = nectar.triggers.poll(record(nectar, "declared-csv"))
    assert done.full is None
    assert objects_of(nectar, "declared-csv") == [(txt,), (first_csv,), (second_csv,)]
