"""What the trigger tests that race clocks and loops share: a chain that counts its executions in a ledger, stores
where objects land, a registry with real ``nectar clock`` processes on it, and loops racing in threads."""

from __future__ import annotations

import os
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import NECTAR, Processes, base_env, settings_env
from harness.processes import waitfor
from nectar.config import Settings, configure
from nectar.registry import Run, RunFilter, RunState
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.helpers.ledger import whole_lines
from tests.helpers.suiteapi_s3put import S3Puts
from tests.schedules.firing import EVERYTHING, PATIENCE
from tests.triggers.test_core import land

#: tasks that append the object(s) they were given to a ledger: one ``os.write`` per run on an ``O_APPEND`` file
LANDED_CHAIN = '''
import os

import luigi
from nectar import NectarTask

LEDGER = {ledger!r}


def note(line):
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{{line}}\\n".encode())
    finally:
        os.close(fd)


class LandedTask(NectarTask):
    """One line per run: the object it was made for."""

    path = luigi.Parameter()

    def run(self):
        note(self.path)
        with self.output().open("w") as out:
            out.write("loaded")


class LandedBatchTask(NectarTask):
    """One line per run: the objects it was made for."""

    paths = luigi.ListParameter()

    def run(self):
        note(" ".join(self.paths))
        with self.output().open("w") as out:
            out.write("loaded")
'''
LANDED = "ingest/landed_chain/LandedTask"
LANDED_BATCH = "ingest/landed_chain/LandedBatchTask"
#: the issue's count of objects (issue 20's check: 1,000 objects in bursts, a clock killed half-way), and how many
#: land at once: the clock killed once half of them are claimed dies while later bursts are still to land
OBJECTS, BURST = 1_000, 50
#: a poll interval short beside the time a burst of objects takes to land and be executed: the tests wait on
#: states, so this only sets how soon a burst is claimed (0.2 s had three clocks take CPU from the workers)
POLL_S = 0.5


def names(count: int) -> list[str]:
    """Object names in key order (zero-padded): they land in the order S3 lists them."""
    return [f"obj-{i:05d}.csv" for i in range(count)]


@dataclass
class Store:
    """Where objects land: the trigger's ``prefix``, and ``put``, which writes one object and answers the URI (or
    absolute path) the task receives for it."""

    prefix: str
    put: Callable[[str], str]


def local_store(folder: Path) -> Store:
    folder.mkdir()
    return Store(str(folder), lambda name: land(folder, name)[0])


def s3_store(request: pytest.FixtureRequest) -> Store:
    """A prefix of the test's moto bucket, written over HTTP as any producer would (S3's PUT)."""
    s3_env = request.getfixturevalue("s3_env")
    bucket = f"{s3_env['ENV']}.{s3_env['PROJECT_BUCKET']}"
    put_object = S3Puts(s3_env["AWS_ENDPOINT_URL"])  # 1,000 objects: boto3's put_object was ~3 s of the test's CPU
    request.addfinalizer(put_object.close)

    def put(name: str) -> str:
        put_object(bucket, f"landing/{name}", name.encode())
        return f"s3://{bucket}/landing/{name}"

    return Store(f"s3://{bucket}/landing/", put)


@dataclass
class Landing:
    """One registry, the landed chain, and the clocks started on it, each a real process."""

    settings: Settings
    processes: Processes
    ledger: Path

    def __post_init__(self) -> None:
        self.nectar = Nectar(self.settings)
        self.runs = self.nectar.runs

    @property
    def env(self) -> dict[str, str]:
        """The registry's settings and the S3 endpoint (moto's, when a test uses it)."""
        aws = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
        return {**base_env(), **aws, **settings_env(self.settings)}

    def clock(self) -> subprocess.Popen[bytes]:
        """A ``nectar clock`` (its trigger loop) on this registry; does not wait."""
        return self.processes.start("clock", [*NECTAR, "clock"], self.env)

    def trigger(self, task: str, prefix: str, **fields: object) -> str:
        definition = {"task": task, "prefix": prefix, "poll_s": POLL_S, **fields}
        return str(self.nectar.triggers.create(definition).id)

    def claimed(self, trigger_id: str) -> int:
        """How many objects the trigger has claimed, in the registry."""
        counts = self.runs.trigger_counts().get(trigger_id)
        return counts.objects if counts is not None else 0

    def executed(self) -> Counter[str]:
        """How many times the task ran for each line it writes, from its own ledger."""
        return Counter(whole_lines(self.ledger))

    def triggered_runs(self, trigger_id: str) -> list[Run]:
        runs, _ = self.runs.find(RunFilter(chain="landed_chain"), limit=EVERYTHING)
        return [run for run in runs if run.trigger_id == trigger_id]

    def wait_claimed(self, trigger_id: str, count: int, what: str) -> None:
        """Until the trigger has claimed ``count`` objects (the clocks alive or not: the failure shows their logs)."""
        self.wait(lambda: self.claimed(trigger_id) >= count, what)

    def wait(self, predicate: Callable[[], object], what: str, interval: float = 0.1) -> object:
        try:
            return waitfor(predicate, PATIENCE, what, interval=interval)
        except AssertionError:
            self.processes.dump_logs()
            raise


@pytest.fixture
def landing(
    registry: Settings, write_chain: Callable[[str, str], Path], processes: Processes, tmp_path: Path
) -> Iterator[Landing]:
    ledger = tmp_path / "ledger.txt"
    write_chain("ingest/landed_chain", LANDED_CHAIN.format(ledger=str(ledger)))
    # leases long enough that a worker starved of CPU on a busy machine keeps its runs: an execution counted twice
    # here is a claim made twice, not a lease that expired (the workers' own tests cover those); renewed as often
    # as a deployed worker's (lease_timeout / 10), not twice a second per attempt as the watched short leases are
    settings = registry.replace(lease_timeout=60.0, heartbeat_interval=6.0)
    configure(settings)
    made = Landing(settings, processes, ledger)
    yield made
    made.nectar.close()


def ended(runs: list[Run]) -> bool:
    return all(run.state not in (RunState.PENDING, RunState.RUNNING) for run in runs)


def land_in_bursts(
    landing: Landing,
    request: pytest.FixtureRequest,
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    where: str,
    clocks: int,
) -> None:
    """The issue's check: OBJECTS written BURST at a time while several clocks poll one registry; the first clock is
    SIGKILLed once half of them are claimed (later bursts still to land) and another started; the task ran once for
    each object, counted from its own ledger, and the registry agrees (one claim and one run each, all DONE)."""
    store = s3_store(request) if where == "s3" else local_store(tmp_path / "landing")
    for _ in range(2):
        start_worker(landing.settings, workers=2)
    trigger_id = landing.trigger(LANDED, store.prefix, param="path")
    doomed, *_ = [landing.clock() for _ in range(clocks)]
    wanted, killed_at = [], None
    keys = names(OBJECTS)
    for start in range(0, OBJECTS, BURST):
        wanted += [store.put(name) for name in keys[start : start + BURST]]
        # the next burst lands while this one is polled: only the bursts before it must be claimed
        landing.wait_claimed(trigger_id, start, f"the objects before {keys[start]} to be claimed")
        if killed_at is None and landing.claimed(trigger_id) >= OBJECTS // 2:
            landing.processes.kill(doomed)
            killed_at = landing.claimed(trigger_id)
            landing.clock()

    landing.wait(lambda: set(wanted) <= set(landing.executed()), "every object to be executed")
    landing.wait(lambda: ended(landing.triggered_runs(trigger_id)), "the triggered runs to end")
    assert killed_at is not None and killed_at < OBJECTS - BURST, (
        f"the clock was killed after the last burst ({killed_at})"
    )
    executed = landing.executed()
    assert {line: n for line, n in executed.items() if n != 1} == {}, "objects executed more than once"
    assert sorted(executed) == sorted(wanted), "the ledger names what never landed"
    claims = landing.runs.trigger_objects(trigger_id, limit=EVERYTHING)
    location = landing.nectar.triggers.view(trigger_id).spec.location
    assert sorted(location.uri(claim.object_key) for claim in claims) == sorted(wanted), "claims lost or doubled"
    assert {claim.state for claim in claims} == {"queued"}
    runs = landing.triggered_runs(trigger_id)
    assert sorted(run.objects or () for run in runs) == [(uri,) for uri in sorted(wanted)]
    assert {run.state for run in runs} == {RunState.DONE}
    assert {claim.run_id for claim in claims} == {run.id for run in runs}


class Racing:
    """Two trigger loops, each with its own façade (registry connections, catalog), polling one trigger in threads
    of this process as fast as they can while objects land."""

    def __init__(self, settings: Settings) -> None:
        self.nectars = [Nectar(settings) for _ in range(2)]
        self.loops = [TriggerLoop(nectar.triggers) for nectar in self.nectars]
        self.stop = threading.Event()
        self.polls: list[dict[str, int]] = []
        self.failures: list[BaseException] = []
        self.threads = [threading.Thread(target=self._race, args=(loop,)) for loop in self.loops]

    def _race(self, loop: TriggerLoop) -> None:
        try:
            while not self.stop.is_set():
                loop._due.clear()  # every tick polls: the loops meet on the trigger as often as they can
                self.polls += [poll.states for poll in loop.tick().values()]
        except BaseException as exc:  # shown by the test, not lost in a thread
            self.failures.append(exc)
            raise

    def __enter__(self) -> Racing:
        # each reads the chain files here, one after the other: two threads parsing at once can trip CPython
        # 3.11's "SystemError: AST constructor recursion depth mismatch" (gh-106905)
        for loop in self.loops:
            loop.tick()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        for nectar in self.nectars:
            nectar.close()


@pytest.fixture
def racing(landing: Landing) -> Iterator[Callable[[], Racing]]:
    made: list[Racing] = []

    def race() -> Racing:
        made.append(Racing(landing.settings))
        return made[-1]

    yield race
    for started in made:
        started.__exit__()
