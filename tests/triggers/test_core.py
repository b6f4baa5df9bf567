"""The trigger core on a local folder and SQLite, polled by hand: each object one run, where the cursor starts,
batches, globs, pauses, file triggers, and the fields a trigger refuses."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.errors import InvalidParameters
from nectar.registry import RunFilter, RunState
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock
from tests.helpers.registries import closed_at_end

LANDING_CHAIN = '''
import luigi
from nectar import NectarTask, Trigger


class LoadFileTask(NectarTask):
    """One landed file."""

    triggers = [Trigger({declared!r}, glob="*.csv", param="path", existing="all", name="csv")]
    path = luigi.Parameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(self.path)


class LoadManyTask(NectarTask):
    """Many landed files at once."""

    paths = luigi.ListParameter()
    label = luigi.Parameter(default="x")

    def run(self):
        with self.output().open("w") as out:
            out.write(",".join(self.paths))


class BrokenTask(NectarTask):
    """A trigger that does not fit its task: listed beside the chain."""

    triggers = Trigger({declared!r}, param="nope")
    day = luigi.DateParameter()
'''


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def declared(tmp_path: Path) -> Path:
    """The folder the chain file's own trigger watches (the API's watch ``landing``)."""
    folder = tmp_path / "declared"
    folder.mkdir()
    return folder


@pytest.fixture
def nectar(settings: Settings, write_chain: Callable[[str, str], Path], declared: Path) -> Nectar:
    write_chain("ingest/landing_chain", LANDING_CHAIN.format(declared=str(declared)))
    return closed_at_end(Nectar(settings))


def land(folder: Path, *names: str) -> list[str]:
    """Write files the way a producer should: into a hidden name, then renamed into place."""
    paths = []
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        hidden = target.parent / f".{target.name}.part"
        hidden.write_text(name)
        os.replace(hidden, target)
        paths.append(str(target))
    return paths


def objects_of(nectar: Nectar, trigger_id: str) -> list[tuple[str, ...]]:
    runs, _ = nectar.runs.find(RunFilter(), limit=1000)
    return sorted(run.objects or () for run in runs if run.trigger_id == trigger_id)


def definition(landing: Path, **fields: object) -> dict[str, object]:
    return {"task": "ingest/landing_chain/LoadFileTask", "prefix": str(landing), "param": "path", **fields}


def api_trigger(nectar: Nectar, landing: Path, **fields: object) -> str:
    return nectar.triggers.create(definition(landing, **fields)).id


def test_a_new_trigger_takes_only_what_lands_after_it_each_object_once(nectar: Nectar, landing: Path) -> None:
    (old,) = land(landing, "2026-06-01.csv")
    os.utime(old, (1e9, 1e9))  # there long before the trigger
    trigger_id = api_trigger(nectar, landing)
    loop = TriggerLoop(nectar.triggers)
    loop.tick()
    assert objects_of(nectar, trigger_id) == []
    paths = land(landing, "2026-06-02.csv", "2026-06-03.csv")  # keys that sort after what was there
    loop._due.clear()
    loop.tick()
    assert objects_of(nectar, trigger_id) == [(paths[0],), (paths[1],)]
    run = next(r for r in nectar.runs.find(RunFilter())[0] if r.trigger_id == trigger_id)
    assert run.params["path"] in paths and run.state == RunState.PENDING
    loop._due.clear()
    loop.tick()  # nothing new: nothing more
    other = TriggerLoop(
        closed_at_end(Nectar(nectar.settings)).triggers
    )  # a second process polling from the start of its view
    other.tick()
    assert objects_of(nectar, trigger_id) == [(paths[0],), (paths[1],)]
    view = nectar.triggers.view(trigger_id).to_dict()
    assert view["objects_seen"] == 2 and view["runs_made"] == 2 and view["files_waiting"] == 2
    assert view["last_object"] == paths[1]


def test_existing_all_takes_what_is_there_and_batches_group_up_to_n(nectar: Nectar, landing: Path) -> None:
    paths = land(landing, *(f"part-{i}.csv" for i in range(5)))
    definition = {
        "task": "ingest/landing_chain/LoadManyTask",
        "prefix": str(landing),
        "param": "paths",
        "batch_size": 2,
        "existing": "all",
    }
    trigger_id = nectar.triggers.create(definition).id
    TriggerLoop(nectar.triggers).tick()
    assert objects_of(nectar, trigger_id) == [tuple(paths[0:2]), tuple(paths[2:4]), tuple(paths[4:])]


def test_the_glob_filters_and_the_cursor_passes_what_it_leaves(nectar: Nectar, landing: Path) -> None:
    trigger_id = api_trigger(nectar, landing, glob="*.csv")
    land(landing, "a.csv", "b.txt", "sub/c.csv", "_SUCCESS")
    loop = TriggerLoop(nectar.triggers)
    loop.tick()
    assert objects_of(nectar, trigger_id) == [(str(landing / "a.csv"),)]


def test_a_paused_trigger_claims_nothing_and_once_resumed_takes_what_landed(nectar: Nectar, landing: Path) -> None:
    trigger_id = api_trigger(nectar, landing, paused=True)
    land(landing, "a.csv")
    loop = TriggerLoop(nectar.triggers)
    loop.tick()
    assert objects_of(nectar, trigger_id) == []
    nectar.triggers.change(trigger_id, {"paused": False})
    loop.tick()
    assert objects_of(nectar, trigger_id) == [(str(landing / "a.csv"),)]


def test_a_trigger_declared_in_the_chain_file_runs_and_a_bad_one_is_listed(nectar: Nectar, declared: Path) -> None:
    land(declared, "early.csv")
    chain = next(info for info in nectar.chains() if info.name == "landing_chain")
    assert [d.id for d in chain.triggers] == ["ingest.landing_chain.LoadFileTask.csv"]
    assert len(chain.trigger_errors) == 1 and "param: BrokenTask has no parameter nope" in chain.trigger_errors[0]
    TriggerLoop(nectar.triggers).tick()
    assert objects_of(nectar, "ingest.landing_chain.LoadFileTask.csv") == [(str(declared / "early.csv"),)]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prefix": "relative/folder"}, "prefix"),
        ({"glob": "[oops"}, "glob"),
        ({"task": "ingest/landing_chain/Nope"}, "task"),
        ({"param": "nope"}, "param"),
        ({"batch_size": 3}, "batch_size"),
        ({"existing": "some"}, "existing"),
        ({"poll_s": 0}, "poll_s"),
        ({"params": {"path": "x"}}, "params.path"),
        ({"color": "red"}, "color"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_stored(
    nectar: Nectar, landing: Path, fields: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidParameters) as caught:
        api_trigger(nectar, landing, **fields)
    assert named in caught.value.errors, caught.value.errors
    assert [r for r in nectar.runs.triggers() if r.source == "api"] == []


def test_a_missing_folder_is_refused_naming_it(nectar: Nectar, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters) as caught:
        api_trigger(nectar, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in " ".join(caught.value.errors["prefix"])


def test_the_clock_is_not_needed_but_taken(nectar: Nectar, landing: Path) -> None:
    clock = Clock(1_000_000.0)
    nectar.triggers.clock = clock.time
    trigger_id = api_trigger(nectar, landing)
    land(landing, "a.csv")
    TriggerLoop(nectar.triggers, clock=clock.time).tick()
    (claimed,) = nectar.runs.trigger_objects(trigger_id)
    assert claimed.recorded_at == 1_000_000.0 and claimed.state == "queued"


def test_over_http_a_folder_outside_the_landing_roots_is_refused_but_a_chain_file_may_watch_it(
    settings: Settings, write_chain: Callable[[str, str], Path], declared: Path, landing: Path
) -> None:
    write_chain("ingest/landing_chain", LANDING_CHAIN.format(declared=str(declared)))
    nectar = closed_at_end(Nectar(settings.replace(landing_roots=None)))  # only <data_dir>/landing
    with pytest.raises(InvalidParameters) as caught:
        api_trigger(nectar, landing)
    assert "outside the folders the API may list" in caught.value.errors["prefix"][0]
    land(declared, "early.csv")
    TriggerLoop(nectar.triggers).tick()
    assert objects_of(nectar, "ingest.landing_chain.LoadFileTask.csv") == [(str(declared / "early.csv"),)]


def test_an_object_landing_before_the_first_poll_is_new_one_there_before_the_trigger_is_not(
    nectar: Nectar, landing: Path
) -> None:
    """``existing: new`` starts in the loop (the request never lists the place): what changed since the trigger
    was made is taken at its first poll, what was there before is not."""
    (old,) = land(landing, "2026-06-01.csv")
    made = time.time()
    os.utime(old, (made - 60, made - 60))
    trigger = nectar.triggers.create(definition(landing))
    assert trigger.to_dict()["cursor"] is None  # not started: the POST listed nothing
    (new,) = land(landing, "2026-05-31.csv")  # even a key before the old one: the first poll lists everything
    TriggerLoop(nectar.triggers).tick()
    assert objects_of(nectar, trigger.id) == [(new,)]
    started = nectar.runs.trigger(trigger.id)
    assert started is not None and started.cursor == "2026-06-01.csv"
