"""Pre-load strategies with a clock the test moves: a schedule's fire (ScheduleLoop.tick) checks its ack file, pending
or landing area, or runs an import task first; the wait loop (WaitLoop.tick) wakes or ends what waits. No sleeping.

The ack cases run on a local folder and on moto's S3 server over HTTP; the registry is SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from nectar.config import Settings
from nectar.errors import InvalidParameters
from nectar.preload import Moment, Preload
from nectar.registry import Run, RunFilter, RunState
from nectar.schedules.loop import ScheduleLoop
from nectar.schedules.model import Fire, ScheduleSpec
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from nectar.waiting import WaitLoop
from tests.api.conftest import build_app
from tests.clock import Clock
from tests.helpers.registries import closed_at_end
from tests.schedules.conftest import on_registry, utc

PRELOAD_CHAIN = '''
import luigi
from nectar import NectarTask, Schedule, Trigger


class SalesTask(NectarTask):
    """The day's sales, loaded once its files are there."""

    date = luigi.DateParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.date))


class ImportTask(NectarTask):
    """Brings the landed files in: the imported strategy's import task."""

    date = luigi.DateParameter()
    source = luigi.Parameter(default="landing")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{{self.date}} {{self.source}}")


class LoadFileTask(NectarTask):
    """One landed file, once the day's ack is there."""

    path = luigi.Parameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(self.path)


class DeclaredTask(NectarTask):
    """Schedules and a trigger declared with pre-loads: the good one is used, the bad ones listed."""

    schedules = [
        Schedule("0 3 * * *", name="good", fire_time_param="date", preload={{"strategy": "ack", "ack_path": {ack!r}}}),
        Schedule("0 3 * * *", name="bad", fire_time_param="date",
                 preload={{"strategy": "ack", "ack_path": "relative/{{date}}.ack", "on_timeout": "later"}}),
    ]
    triggers = [Trigger({landing!r}, param="path", name="bad", preload={{"strategy": "pending", "glob": "*.csv"}})]
    date = luigi.DateParameter()
    path = luigi.Parameter(default="")
'''
#: the fires of these tests: 2026-06-01T03:00Z, its date parameter (and templates) the day before
FIRE = utc("2026-06-01T03:00")
DAY = "2026-05-31"
HOUR = 3600.0


@dataclass
class Area:
    """A place files land in: a local folder or a prefix of a moto bucket, written to by the test."""

    kind: str
    root: str
    put: Callable[[str], None]

    def uri(self, relative: str) -> str:
        return f"{self.root}{relative}"


def local_area(folder: Path) -> Area:
    def put(relative: str) -> None:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")

    return Area("local", f"{folder}/", put)


@pytest.fixture(params=["local", "s3"])
def area(request: pytest.FixtureRequest, tmp_path: Path) -> Area:
    """Where ack files land: a local folder, or moto's S3 server over HTTP."""
    if request.param == "local":
        return local_area(tmp_path / "pending")
    env = request.getfixturevalue("s3_env")
    bucket = f"{env['ENV']}.{env['PROJECT_BUCKET']}"

    def put(relative: str) -> None:
        boto3.client("s3").put_object(Bucket=bucket, Key=f"pending/{relative}", Body=b"x")

    return Area("s3", f"s3://{bucket}/pending/", put)


@pytest.fixture
def landing(tmp_path: Path) -> Area:
    return local_area(tmp_path / "landing")


@pytest.fixture
def clock() -> Clock:
    return Clock(utc("2026-06-01T00:00"))


@pytest.fixture
def registry(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings on SQLite, or (parametrized indirectly: ``postgres``) on a fresh PostgreSQL database."""
    return on_registry(request, settings, getattr(request, "param", "sqlite"))


@pytest.fixture
def nectar(
    registry: Settings, write_chain: Callable[[str, str], Path], clock: Clock, tmp_path: Path, landing: Area
) -> Nectar:
    ack = f"{tmp_path}/pending/{{date}}.ack"
    write_chain("daily/preload_chain", PRELOAD_CHAIN.format(ack=ack, landing=landing.root))
    service = closed_at_end(Nectar(registry))
    service.schedules.clock = clock.time
    service.triggers.clock = clock.time
    return service


@pytest.fixture
def loop(nectar: Nectar, clock: Clock) -> ScheduleLoop:
    return ScheduleLoop(nectar.schedules, clock=clock.time)


@pytest.fixture
def waits(nectar: Nectar, clock: Clock) -> WaitLoop:
    return WaitLoop(nectar.runs, clock=clock.time)


def schedule(nectar: Nectar, preload: dict[str, Any] | None, **fields: Any) -> str:
    """A daily 03:00 UTC schedule of SalesTask (its date the day before) with ``preload``, made at the clock's now."""
    definition = {
        "task": "daily/preload_chain/SalesTask",
        "cron": "0 3 * * *",
        "fire_time_param": "date",
        "fire_time_offset": "-P1D",
        "preload": preload,
        **fields,
    }
    return nectar.schedules.create(definition).id


def fired(nectar: Nectar, loop: ScheduleLoop, clock: Clock, schedule_id: str) -> tuple[Fire, Run | None]:
    """Move the clock to the fire time and run the loop's pass: the fire it made, and its run."""
    clock.now = FIRE
    loop.tick()
    fires = nectar.schedules.fires(schedule_id)
    assert [fire.fire_time for fire, _ in fires] == [FIRE], "the schedule did not fire at 03:00"
    return fires[0]


def now(nectar: Nectar, run: Run) -> Run:
    current = nectar.runs.get(run.id)
    assert current is not None
    return current


def last_fire(nectar: Nectar, schedule_id: str) -> Fire:
    return nectar.schedules.fires(schedule_id)[0][0]


# --- ack -----------------------------------------------------------------------------------------------


def ack(area: Area, **options: Any) -> dict[str, Any]:
    return {"strategy": "ack", "ack_path": area.uri("sales/{date}.ack"), **options}


def test_an_ack_there_at_the_fire_makes_a_plain_run(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, area: Area
) -> None:
    sid = schedule(nectar, ack(area))
    area.put(f"sales/{DAY}.ack")  # the template's date is the fire's date parameter: the day before

    fire, run = fired(nectar, loop, clock, sid)
    assert fire.state == "queued" and run is not None
    assert (run.state, run.waiting_for, run.params) == (RunState.PENDING, None, {"date": DAY})


def test_an_ack_landing_at_minute_30_wakes_the_run_that_waited_for_it(
    nectar: Nectar, loop: ScheduleLoop, waits: WaitLoop, clock: Clock, area: Area
) -> None:
    sid = schedule(nectar, ack(area))
    fire, run = fired(nectar, loop, clock, sid)
    uri = area.uri(f"sales/{DAY}.ack")
    assert fire.state == "queued" and run is not None
    assert (run.state, run.waiting_for, run.wait_until) == (RunState.WAITING, (uri,), FIRE + HOUR)
    assert nectar.runs.claim("w:1") is None, "a worker claimed a run waiting for its ack"

    assert waits.tick() == {"later": 1}
    clock.advance(29 * 60)
    assert waits.tick() == {"later": 1}
    assert now(nectar, run).state == RunState.WAITING
    clock.advance(60)
    area.put(f"sales/{DAY}.ack")
    assert waits.tick() == {"woken": 1}
    assert now(nectar, run).state == RunState.PENDING
    claimed = nectar.runs.claim("w:1")
    assert claimed is not None and claimed.id == run.id


@pytest.mark.parametrize(("on_timeout", "state"), [(None, RunState.CANCELLED), ("fail", RunState.FAILED)])
def test_an_ack_that_never_lands_ends_the_wait_at_its_timeout(
    nectar: Nectar,
    loop: ScheduleLoop,
    waits: WaitLoop,
    clock: Clock,
    area: Area,
    on_timeout: str | None,
    state: RunState,
) -> None:
    sid = schedule(nectar, ack(area, **({"on_timeout": on_timeout} if on_timeout else {})))
    _, run = fired(nectar, loop, clock, sid)
    assert run is not None and run.state == RunState.WAITING
    uri = area.uri(f"sales/{DAY}.ack")

    clock.advance(HOUR - 1)
    assert waits.tick() == {"later": 1}
    clock.advance(1)
    assert waits.tick() == {"skipped" if on_timeout is None else "failed": 1}
    ended = now(nectar, run)
    said = f"{'skipped: ' if on_timeout is None else ''}waited 1h0m for {uri}"
    assert (ended.state, ended.error) == (state, said)
    fire = last_fire(nectar, sid)
    if on_timeout is None:  # a skip: the fire says so, with the reason
        assert (fire.state, fire.reason) == ("skipped", said)
    else:
        assert (fire.state, fire.run_id) == ("queued", run.id)


def test_a_late_fire_has_waited_since_its_fire_time(
    nectar: Nectar, loop: ScheduleLoop, waits: WaitLoop, clock: Clock, tmp_path: Path
) -> None:
    sid = schedule(nectar, {"strategy": "ack", "ack_path": f"{tmp_path}/{{date}}.ack"}, catchup="latest")
    clock.now = FIRE + 2 * HOUR  # no clock ran at 03:00: the catch-up makes the fire at 05:00, past its wait
    loop.tick()
    [(fire, run)] = nectar.schedules.fires(sid)
    assert fire.fire_time == FIRE and run is not None and run.wait_until == FIRE + HOUR

    assert waits.tick() == {"skipped": 1}
    assert now(nectar, run).error == f"skipped: waited 2h0m for {tmp_path}/{DAY}.ack"


def test_an_ack_path_takes_the_fire_time_in_the_schedules_zone(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, tmp_path: Path
) -> None:
    template = f"{tmp_path}/acks/{{year}}/{{month}}/{{day}}/{{hour}}{{minute}}-{{datetime}}.ack"
    sid = schedule(nectar, {"strategy": "ack", "ack_path": template}, timezone="Europe/Paris", cron="0 5 * * *")
    _, run = fired(nectar, loop, clock, sid)  # 05:00 in Paris is 03:00Z; the offset moves it a day back
    assert run is not None and run.waiting_for == (f"{tmp_path}/acks/2026/05/31/0500-2026-05-31T05:00:00.ack",)


# --- pending -------------------------------------------------------------------------------------------


def test_pending_skips_the_fire_on_an_empty_area_and_runs_with_a_file(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    sid = schedule(nectar, {"strategy": "pending", "area": landing.uri("{date}/"), "glob": "*.csv"})
    landing.put(f"{DAY}/notes.txt")  # not matching the glob

    fire, run = fired(nectar, loop, clock, sid)
    assert (fire.state, fire.reason, run) == (
        "skipped",
        f"pending: no file under {landing.root}{DAY}/ matching *.csv",
        None,
    )
    assert nectar.runs.claim("w:1") is None, "a run was queued for a skipped fire"

    landing.put("2026-06-01/sales.csv")  # the next fire's day
    clock.now = FIRE + 86_400
    loop.tick()
    fire, run = nectar.schedules.fires(sid)[0]
    assert fire.state == "queued" and run is not None and run.state == RunState.PENDING


def test_pending_skips_when_the_templated_folder_does_not_exist_yet(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    sid = schedule(nectar, {"strategy": "pending", "area": landing.uri("{date}/")})
    fire, _ = fired(nectar, loop, clock, sid)
    assert (fire.state, fire.reason) == ("skipped", f"pending: no file under {landing.root}{DAY}/")


# --- imported ------------------------------------------------------------------------------------------


def imported(landing: Area, **options: Any) -> dict[str, Any]:
    return {
        "strategy": "imported",
        "area": landing.root,
        "import_task": "daily/preload_chain/ImportTask",
        "import_params": {"source": "sftp"},
        **options,
    }


def import_run(nectar: Nectar, run: Run) -> Run:
    assert run.waiting_for is not None and len(run.waiting_for) == 1
    found = nectar.runs.get(run.waiting_for[0].removeprefix("run:"))
    assert found is not None, f"{run.waiting_for} names no run"
    return found


def fired_after_import(nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area) -> tuple[Run, Run]:
    """A file landed, the imported schedule fired: the import run, and the run waiting for it."""
    sid = schedule(nectar, imported(landing))
    landing.put("sales-1.csv")
    fire, run = fired(nectar, loop, clock, sid)
    assert fire.state == "queued" and run is not None
    return import_run(nectar, run), run


@pytest.mark.parametrize("registry", ["sqlite", "postgres"], indirect=True)
def test_imported_queues_the_import_first_and_the_run_waits_until_it_is_done(
    nectar: Nectar, loop: ScheduleLoop, waits: WaitLoop, clock: Clock, landing: Area
) -> None:
    first, run = fired_after_import(nectar, loop, clock, landing)
    assert (first.ref, first.params, first.state) == (
        "daily/preload_chain/ImportTask",
        {"date": DAY, "source": "sftp"},  # the fire's date too: it has a parameter named like fire_time_param
        RunState.PENDING,
    )
    assert (run.state, run.wait_until) == (RunState.WAITING, FIRE + HOUR)
    assert waits.tick() == {"later": 1}

    claimed = nectar.runs.claim("w:1")
    assert claimed is not None and claimed.id == first.id, "the import run was not the one to run"
    assert nectar.runs.complete(first.id, claimed.attempt)
    clock.advance(1)
    assert waits.tick() == {"woken": 1}
    assert now(nectar, run).state == RunState.PENDING


def test_imported_fails_the_run_when_its_import_fails(
    nectar: Nectar, loop: ScheduleLoop, waits: WaitLoop, clock: Clock, landing: Area
) -> None:
    first, run = fired_after_import(nectar, loop, clock, landing)
    claimed = nectar.runs.claim("w:1", run_id=first.id)
    assert claimed is not None
    assert nectar.runs.fail(first.id, claimed.attempt, "ImportTask", "sftp refused", retryable=False)
    clock.advance(1)
    assert waits.tick() == {"failed": 1}
    assert (now(nectar, run).state, now(nectar, run).error) == (
        RunState.FAILED,
        f"needed run {first.id}, which ended FAILED: sftp refused",
    )


def submitted_import(nectar: Nectar, landing: Area) -> tuple[str, Run]:
    """An imported schedule with a file landed, and a client's run of the import its fire needs, PENDING."""
    sid = schedule(nectar, imported(landing))
    landing.put("sales-1.csv")
    submitted = nectar.submit("daily", "preload_chain", "ImportTask", {"date": DAY, "source": "sftp"}).run
    assert submitted is not None
    return sid, submitted


def test_imported_waits_for_an_active_import_of_the_same_key_instead_of_a_second_one(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    sid, active = submitted_import(nectar, landing)
    _, run = fired(nectar, loop, clock, sid)
    assert run is not None and run.waiting_for == (f"run:{active.id}",)
    imports, count = nectar.find_runs(RunFilter(task="ImportTask"))
    assert (count, imports[0].id) == (1, active.id)


@pytest.mark.parametrize("registry", ["sqlite", "postgres"], indirect=True)
def test_imported_with_the_queue_full_queues_no_import_past_the_bound_though_its_run_joins_an_active_one(
    nectar: Nectar, clock: Clock, landing: Area
) -> None:
    """The fire as a whole fits the bound (``NECTAR_MAX_QUEUE``): its run joins a client's active run, but its import
    run would be one more queued; the fire is skipped saying so."""
    bounded = closed_at_end(Nectar(nectar.settings.replace(max_queue=2)))
    bounded.schedules.clock = clock.time
    sid = schedule(bounded, imported(landing))
    landing.put("sales-1.csv")
    assert bounded.submit("daily", "preload_chain", "SalesTask", {"date": DAY}).created  # the fire's run: joined
    assert bounded.submit("daily", "preload_chain", "SalesTask", {"date": "2026-01-01"}).created  # the queue full
    fire, run = fired(bounded, ScheduleLoop(bounded.schedules, clock=clock.time), clock, sid)
    assert (fire.state, run) == ("skipped", None)
    assert fire.reason is not None and "the run queue is full: 2 runs are queued" in fire.reason
    assert bounded.find_runs(RunFilter(state=RunState.PENDING))[1] == 2
    assert bounded.find_runs(RunFilter(task="ImportTask"))[1] == 0


def test_imported_with_its_import_done_already_makes_a_plain_run(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    sid, done = submitted_import(nectar, landing)
    claimed = nectar.runs.claim("w:1", run_id=done.id)
    assert claimed is not None
    info = nectar.task("daily", "preload_chain", "ImportTask")
    info.instantiate({"date": DAY, "source": "sftp"}).run()  # its output written: the import is done
    assert nectar.runs.complete(done.id, claimed.attempt)

    fire, run = fired(nectar, loop, clock, sid)
    assert fire.state == "queued" and run is not None and (run.state, run.waiting_for) == (RunState.PENDING, None)


def test_imported_skips_the_fire_on_an_empty_landing_area(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    Path(landing.root).mkdir(parents=True)
    sid = schedule(nectar, imported(landing))

    fire, run = fired(nectar, loop, clock, sid)
    assert (fire.state, fire.reason, run) == ("skipped", f"imported: no file under {landing.root}", None)
    assert nectar.runs.claim("w:1") is None, "an import run was queued for no file"


# --- triggers ------------------------------------------------------------------------------------------


def test_a_trigger_with_an_ack_queues_each_objects_run_waiting_for_the_days_ack(
    nectar: Nectar, waits: WaitLoop, clock: Clock, landing: Area, area: Area
) -> None:
    Path(landing.root).mkdir(parents=True)
    made = nectar.triggers.create(
        {
            "task": "daily/preload_chain/LoadFileTask",
            "prefix": landing.root,
            "param": "path",
            "preload": {"strategy": "ack", "ack_path": area.uri("files/{date}T{hour}.ack"), "ack_wait_timeout": 600},
        }
    )
    assert made.to_dict()["preload"] == {
        "strategy": "ack",
        "ack_path": area.uri("files/{date}T{hour}.ack"),
        "ack_wait_timeout": 600.0,
        "on_timeout": "skip",
    }
    landing.put("a.csv")
    clock.now = FIRE
    polls = TriggerLoop(nectar.triggers, clock=clock.time).tick()
    assert polls[made.id].states == {"queued": 1}
    [(claimed, run)] = nectar.triggers.objects(made.id)
    uri = area.uri("files/2026-06-01T03.ack")  # a claim's time, in UTC
    assert run is not None and (run.state, run.waiting_for, run.wait_until) == (RunState.WAITING, (uri,), FIRE + 600)

    clock.advance(600)
    assert waits.tick() == {"skipped": 1}
    [(claimed, run)] = nectar.triggers.objects(made.id)
    assert (claimed.state, claimed.reason) == ("skipped", f"skipped: waited 10m0s for {uri}")


def test_a_trigger_with_pending_skips_its_objects_while_the_area_is_empty(
    nectar: Nectar, clock: Clock, landing: Area, tmp_path: Path
) -> None:
    Path(landing.root).mkdir(parents=True)
    pending = local_area(tmp_path / "ready")
    made = nectar.triggers.create(
        {
            "task": "daily/preload_chain/LoadFileTask",
            "prefix": landing.root,
            "param": "path",
            "preload": {"strategy": "pending", "area": pending.root},
        }
    )

    def poll() -> dict[str, int]:
        record = nectar.runs.trigger(made.id)  # its cursor as the last poll left it
        assert record is not None
        return nectar.triggers.poll(record).states

    landing.put("a.csv")
    assert poll() == {"skipped": 1}
    pending.put("go")
    landing.put("b.csv")
    assert poll() == {"queued": 1}
    states = {obj.object_key: (obj.state, obj.reason) for obj, _ in nectar.triggers.objects(made.id)}
    assert states == {"a.csv": ("skipped", f"pending: no file under {pending.root}"), "b.csv": ("queued", None)}


# --- definitions ---------------------------------------------------------------------------------------

GOOD_ACK = {"strategy": "ack", "ack_path": "s3://bucket/pending/sales/{date}.ack"}


@pytest.mark.parametrize(
    ("preload", "field", "message"),
    [
        ({"strategy": "later"}, "preload.strategy", "must be one of none, imported, pending, ack"),
        ("ack", "preload", "must be an object"),
        ({"strategy": "ack"}, "preload.ack_path", "missing"),
        ({"strategy": "pending"}, "preload.area", "missing"),
        ({"strategy": "imported", "area": "/landing/"}, "preload.import_task", "must name a task"),
        ({**GOOD_ACK, "ack_path": "pending/{date}.ack"}, "preload.ack_path", "neither an S3 prefix nor an absolute"),
        ({**GOOD_ACK, "ack_path": "/pending/{day_before}.ack"}, "preload.ack_path", "unknown field {day_before}"),
        ({**GOOD_ACK, "ack_path": "/pending/{date.ack"}, "preload.ack_path", "is not a template of {date}"),
        ({**GOOD_ACK, "ack_path": "s3://bucket/pending/"}, "preload.ack_path", "names a folder, not a file"),
        ({"strategy": "pending", "area": "/landing/{}/"}, "preload.area", "is not a template"),
        ({"strategy": "pending", "area": "/landing/", "glob": "[a"}, "preload.glob", "unbalanced"),
        ({**GOOD_ACK, "ack_wait_timeout": 0}, "preload.ack_wait_timeout", "above 0"),
        ({**GOOD_ACK, "ack_wait_timeout": True}, "preload.ack_wait_timeout", "above 0"),
        ({**GOOD_ACK, "on_timeout": "wait"}, "preload.on_timeout", "must be one of skip, fail"),
        ({**GOOD_ACK, "area": "/landing/"}, "preload.area", "not an option of ack"),
        ({"strategy": "none", "ack_path": "/x.ack"}, "preload.ack_path", "not an option of none"),
    ],
)
def test_a_bad_preload_is_refused_naming_its_option(preload: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidParameters) as raised:
        Preload.from_definition(preload)
    assert list(raised.value.errors) == [field]
    assert message in raised.value.errors[field][0]


def test_none_or_no_preload_is_none_and_a_preload_reads_back_as_written() -> None:
    assert Preload.from_definition(None) is None
    assert Preload.from_definition({"strategy": "none"}) is None
    read = Preload.from_definition(GOOD_ACK)
    assert read is not None and Preload.from_definition(read.definition()) == read
    assert read.definition() == {**GOOD_ACK, "ack_wait_timeout": 3600.0, "on_timeout": "skip"}
    assert Moment(FIRE).fields()["datetime"] == "2026-06-01T03:00:00"


def test_an_unknown_import_task_or_parameter_is_refused_naming_it(nectar: Nectar, landing: Area) -> None:
    for changes, field in (
        ({"import_task": "daily/preload_chain/NoTask"}, "preload.import_task"),
        ({"import_params": {"source": "sftp", "colour": "red"}}, "preload.import_params.colour"),
    ):
        with pytest.raises(InvalidParameters) as raised:
            schedule(nectar, {**imported(landing), **changes})
        assert list(raised.value.errors) == [field]


def test_a_bad_preload_in_a_chain_file_is_listed_and_breaks_nothing_else(nectar: Nectar, tmp_path: Path) -> None:
    [info] = [chain for chain in nectar.chains() if chain.ref == "daily/preload_chain"]
    assert [declared.id for declared in info.schedules] == ["daily.preload_chain.DeclaredTask.good"]
    assert info.schedules[0].spec.preload == Preload.from_definition(
        {"strategy": "ack", "ack_path": f"{tmp_path}/pending/{{date}}.ack"}
    )
    assert info.schedule_errors == (
        "DeclaredTask.schedules[1]: preload.ack_path: 'relative/2026-01-31.ack' is neither an S3 prefix nor an absolute"
        " path: give s3://bucket/prefix/ or an absolute folder path (/data/landing); preload.on_timeout: must be one of"
        " skip, fail, not 'later'",
    )
    assert info.trigger_errors == (
        "DeclaredTask.triggers[0]: preload.area: missing: give s3://bucket/… or an absolute"
        " path (a template of the fire time)",
    )
    assert "SalesTask" in info.tasks and nectar.schedules.view("daily.preload_chain.DeclaredTask.good")


@pytest.fixture
def client(settings: Settings, nectar: Nectar, clock: Clock) -> Iterator[Any]:
    app = build_app(settings)
    app.extensions["nectar"].schedules.clock = clock.time
    yield app.test_client()


def test_the_api_shows_a_preload_changes_it_and_names_a_bad_option(client: Any, tmp_path: Path) -> None:
    body: dict[str, Any] = {
        "task": "daily/preload_chain/SalesTask",
        "cron": "0 3 * * *",
        "fire_time_param": "date",
        "preload": {"strategy": "ack", "ack_path": f"{tmp_path}/{{date}}.ack", "on_timeout": "fail"},
    }
    answer = client.post("/api/schedules", json=body)
    assert answer.status_code == 201, answer.get_json()
    data = answer.get_json()["data"]
    assert data["preload"] == {**body["preload"], "ack_wait_timeout": 3600.0}

    changed = client.patch(f"/api/schedules/{data['id']}", json={"preload": {"strategy": "none"}})
    assert changed.status_code == 200 and changed.get_json()["data"]["preload"] is None

    bad = client.post("/api/schedules", json={**body, "preload": {"strategy": "ack", "ack_path": "/x/{when}.ack"}})
    assert bad.status_code == 422
    assert "unknown field {when}" in bad.get_json()["errors"]["preload.ack_path"][0]


def test_an_import_task_gone_since_the_schedule_was_made_skips_the_fire_naming_it(
    nectar: Nectar, loop: ScheduleLoop, clock: Clock, landing: Area
) -> None:
    sid = schedule(nectar, imported(landing))
    landing.put("sales-1.csv")
    record = nectar.runs.schedule(sid)
    assert record is not None
    gone = ScheduleSpec.from_definition(
        {**record.spec.definition(), "preload": imported(landing, import_task="daily/preload_chain/GoneTask")}
    )
    assert nectar.runs.change_schedule(sid, clock.now, spec=gone) is not None  # as a file's edit would, unchecked

    fire, run = fired(nectar, loop, clock, sid)
    assert (fire.state, run) == ("skipped", None)
    assert fire.reason is not None and fire.reason.startswith(
        "imported: cannot make the import task daily/preload_chain/GoneTask: "
    )
    assert "GoneTask" in fire.reason.split(": ", 2)[2]
