"""Plain luigi tasks run by the service (a real worker, its attempt processes fresh, then reused) under a luigi.cfg
setting, against ``python -m luigi`` with the same luigi.cfg on the same chain file and luigid (round 62):

- a ``complete()`` that raises, asked in a process of luigi's scheduling pool (``[core] parallel_scheduling``), ends
  the run as it ends luigi's: a scheduling error told with luigi's traceback (its frames), never retried; not data
  waited for (an external task's), and not an attempt that waits for the pool's answer for ever (an exception that
  does not unpickle);
- a task left undone with no step failing (luigi's ``[worker] task_limit``) has its ``requires()`` asked as often as
  luigi asks it (luigi's summary, made once);
- and each task's ``complete()`` asked by the attempt as often as luigi asks it."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from harness import lifeline_env
from nectar.config import Settings
from nectar.registry import Run, RunState, Step
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_reuse import reused
from tests.nectar.test_spare import KEPT, ended, pid_of

StartWorker = Callable[..., subprocess.Popen[bytes]]
CHAIN = """
import os
import time

import luigi


def noted(task):
    with open(os.path.join(os.environ["PLAIN62_OUT"], f"complete-{task.n}"), "a") as out:
        out.write(f"{os.getpid()} {task.task_family}\\n")


class Unpicklable(Exception):  # pickles, but does not unpickle: its __init__ takes two arguments
    def __init__(self, what, why):
        super().__init__(f"{what} {why}")


class BrokenData(luigi.ExternalTask):
    n = luigi.IntParameter()

    def complete(self):
        noted(self)
        raise RuntimeError("the listing broke")


class UnpicklableData(luigi.ExternalTask):
    n = luigi.IntParameter()

    def complete(self):
        noted(self)
        raise Unpicklable("the listing", "broke")


class Counted(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["PLAIN62_OUT"], f"{self.task_family}-{self.n}"))

    def complete(self):
        noted(self)
        return super().complete()

    def run(self):
        with self.output().open("w") as out:
            out.write("made\\n")


class NeedsBrokenDataTask(Counted):
    def requires(self):
        return BrokenData(n=self.n)


class NeedsUnpicklableDataTask(Counted):
    def requires(self):
        return UnpicklableData(n=self.n)


class BrokenStepTask(Counted):
    def complete(self):
        noted(self)
        raise RuntimeError("complete() broke")


class ThereTask(Counted):  # its file made before each run: complete
    pass


class TopTask(Counted):
    def requires(self):
        return [ThereTask(n=self.n), Counted(n=self.n)]


class DynamicTask(Counted):
    def run(self):
        yield Counted(n=self.n)
        super().run()


class NoOutputData(luigi.ExternalTask):  # no output, luigi's own complete()
    n = luigi.IntParameter()


class NeedsNoOutputDataTask(Counted):
    def requires(self):
        return NoOutputData(n=self.n)


class SlowTask(Counted):  # past its worker_timeout: ended by luigi's worker
    worker_timeout = 1

    def run(self):
        with open(os.path.join(os.environ["PLAIN62_OUT"], f"slow-{self.n}"), "w") as out:
            out.write(f"{os.getpid()}\\n")
        while True:  # until it is ended
            time.sleep(0.05)


class TimedTask(Counted):  # within its worker_timeout: run in a process of its own, DONE
    worker_timeout = 600

    def requires(self):
        return Counted(n=self.n)


class RequiringTask(Counted):
    def requires(self):
        with open(os.path.join(os.environ["PLAIN62_OUT"], f"requires-{self.n}"), "a") as out:
            out.write(f"{os.getpid()} {self.task_family}\\n")
        return Counted(n=self.n)
"""
#: a traceback's frame lines (where, and the line's code), as ``traceback`` prints them
FRAME = re.compile(r'^  File "[^"]*", line \d+, in \w+$|^    \S.*$', re.M)


def frames(text: str) -> list[str]:
    """The frames of the first traceback in ``text`` (none if it holds none)."""
    start = text.find("Traceback (most recent call last):")
    if start < 0:
        return []
    lines = text[start:].splitlines()[1:]
    taken = []
    for line in lines:
        if not FRAME.match(line):
            break
        taken.append(line)
    return taken


#: ``luigi.build`` of a chain file's task, as a program (``python -c``): the chain's module, the task, its ``n``, luigid
BUILD = (
    "import importlib, sys, luigi; module = importlib.import_module(sys.argv[1])"
    "; luigi.build([getattr(module, sys.argv[2])(n=int(sys.argv[3]))], scheduler_url=sys.argv[4])"
)


class Plain(NamedTuple):
    """What a test here runs plain luigi chains with: the session's luigid, the test's settings and folder
    (``PLAIN62_OUT``, where the tasks note each ask), its chain writer and worker starter."""

    settings: Settings
    #: luigid's URL (None: luigi's local scheduler, ``--local-scheduler`` and a worker without luigid)
    luigid: str | None
    out: Path
    write_chain: Callable[[str, str], Path]
    start_worker: StartWorker

    def luigi_then_served(
        self, chain: str, section: str, lines: str, task: str, *flags: str, build: bool = False
    ) -> tuple[str, list[tuple[int, Run]]]:
        """``task`` (``n`` 0) of ``plain62/<chain>`` (:data:`CHAIN`) run by ``python -m luigi`` (or, if ``build``, by
        ``luigi.build``, as a program calls it) with the project's luigi.cfg, ``lines`` first in its ``section``, and
        luigid; what it printed; then by a worker with ``n`` 1-4 and the same luigi.cfg, each run ended, the last
        ones in a reused process, the chain file changed before the third (a hot reload)."""
        path = self.write_chain(f"plain62/{chain}", CHAIN)
        project = Path(__file__).resolve().parents[2] / "configuration" / "luigi.cfg"
        config = self.out / "luigi.cfg"
        config.write_text(project.read_text().replace(f"[{section}]\n", f"[{section}]\n{lines}"))
        env = {**os.environ, "PYTHONPATH": str(path.parent), "LUIGI_CONFIG_PATH": str(config), **lifeline_env()}
        argv = [sys.executable, "-m", "luigi", "--module", chain, task, "--n", "0"]
        scheduler = ["--local-scheduler"] if self.luigid is None else ["--scheduler-url", self.luigid]
        if build:  # luigi.build's program takes luigid's URL alone (a local scheduler: not built so here)
            argv, scheduler = [sys.executable, "-c", BUILD, chain, task, "0"], scheduler[1:]
        done = subprocess.run(
            [*argv, *scheduler, *flags], env=env, cwd=path.parent, capture_output=True, text=True, timeout=120
        )
        return done.stdout + done.stderr, self.served(chain, CHAIN, task, config)

    def served(
        self, chain: str, source: str, task: str, config: Path, retries: int = 0, before: Callable[[int], object] = int
    ) -> list[tuple[int, Run]]:
        """``task`` of ``plain62/<chain>`` (its ``source`` written) run by a worker with ``n`` 1-4 and luigi.cfg
        ``config``, ``retries`` a run, ``before(n)`` called before each submission; each run ended, the last ones in a
        reused process, the chain file changed before the third (a hot reload)."""
        served = self.settings.replace(
            scheduler_url=self.luigid, luigi_config=config, spare_idle=KEPT, retries=retries, retry_delay=0
        )
        nectar = closed_at_end(Nectar(served))
        self.start_worker(served, workers=1)
        runs: list[tuple[int, Run]] = []
        # 4 runs at least, then more until one ran in a reused process: which spare is ready first at each claim (a
        # process back from its run or a fresh one) depends on the machine's load, so it is not counted; a bound only
        # fails a worker that never reuses one
        while len(runs) < 4 or not any(reused(run) for _, run in runs):
            n = len(runs) + 1
            assert n <= REUSE_WITHIN, f"no run reused a process: {[run.worker for _, run in runs]}"
            if n == 3:  # a hot reload: the chain file changed, executed anew (in a reused process too)
                self.write_chain(f"plain62/{chain}", source + "\n# changed\n")
            before(n)
            submission = nectar.submit("plain62", chain, task, {"n": n})
            assert submission.run is not None
            runs.append((n, ended(nectar, submission.run.id)))
        return runs


#: the runs :meth:`Plain.served` submits at most before one must have run in a reused process
REUSE_WITHIN = 40


@pytest.fixture
def plain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    luigid: str,
    write_chain: Callable[[str, str], Path],
    start_worker: StartWorker,
) -> Plain:
    """The test's :class:`Plain`, its tasks' notes in its folder."""
    monkeypatch.setenv("PLAIN62_OUT", str(tmp_path))
    return Plain(settings, luigid, tmp_path, write_chain, start_worker)


@pytest.mark.parametrize("task", ["NeedsBrokenDataTask", "NeedsUnpicklableDataTask", "BrokenStepTask"])
def test_a_complete_that_raised_in_luigis_scheduling_pool_fails_the_run_with_luigis_traceback(
    plain: Plain, task: str
) -> None:
    pool = "parallel_scheduling = true\nparallel_scheduling_processes = 2\n"
    told, runs = plain.luigi_then_served("pool_chain", "core", pool, task, "--parallel-scheduling")
    assert "due to error in complete() method" in told, told
    expected, asks = frames(told.split("due to error in complete() method", 1)[1]), asked(plain.out, 0)
    assert expected and asks, told
    for n, run in runs:
        assert run.state == RunState.FAILED, run
        assert run.error is not None and run.error.startswith("complete() failed: "), run.error
        assert frames(run.error) == expected, (run.worker, run.error, told)
        assert asked(plain.out, n) == asks, (run.worker, asks)


def test_a_task_luigi_leaves_undone_has_its_requires_asked_as_often_as_under_luigi(plain: Plain) -> None:
    """luigi's ``[worker] task_limit = 1``: the task's dependency is not scheduled (a scheduling error luigi's worker
    fires no event for), the task is left undone, no step failing; luigi's summary walks its ``requires()``, which
    the attempt reads for why it waits and for its failure's text, made once, as ``luigi.build`` makes it
    (``python -m luigi`` makes it twice: again for its exit code, ``luigi.retcodes``)."""
    told, runs = plain.luigi_then_served("limit_chain", "worker", "task_limit = 1\n", "RequiringTask", build=True)
    assert "exceeded task-limit" in told, told
    expected, asks = asked(plain.out, 0, file="requires"), asked(plain.out, 0)
    assert expected["RequiringTask"] >= 1, told
    for n, run in runs:
        assert run.state == RunState.FAILED and "not complete after the run" in (run.error or ""), run
        assert asked(plain.out, n, file="requires") == expected, (run.worker, expected)
        assert asked(plain.out, n) == asks, (run.worker, asks)


def test_an_external_task_with_no_output_fails_the_run_saying_what_luigi_says_of_it(plain: Plain) -> None:
    """An external task that names no output and keeps luigi's own ``complete()`` is never complete: luigi warns so as
    it asks ("Task ... without outputs has no custom complete() method") and logs that its data does not exist.
    The service's run fails on that step (nothing to wait for) saying luigi's words, fresh, reused and after a hot
    reload. Before, it said "external data missing: its output (it cannot be waited for: it names no missing
    output)", naming an output that the task does not have."""
    told, runs = plain.luigi_then_served("no_output_chain", "core", "", "NeedsNoOutputDataTask")
    said = "without outputs has no custom complete() method"
    assert f"NoOutputData(n=0) {said}" in told and "Data for NoOutputData(n=0) does not exist (yet?)" in told, told
    for n, run in runs:
        assert (run.state, run.failed_step, run.attempt) == (RunState.FAILED, "NoOutputData", 1), run
        assert run.error == (
            f"external data missing: NoOutputData(n={n}) names no output and has no complete() of its own, so luigi "
            f'never finds it complete (luigi: "Task NoOutputData(n={n}) {said}"), and an external task is never run'
        ), (run.worker, run.error)


def test_a_step_past_its_worker_timeout_is_ended_as_luigi_ends_it_with_one_worker(plain: Plain) -> None:
    """A task's ``worker_timeout``: luigi's worker runs the step in a process of its own even with one worker, and
    past that time ends it ("Task ... timed out after 1 seconds and was terminated"), a failure. The service's run
    (one worker, one luigi worker process a run) fails on that step with luigi's words, and the step's process is
    gone, fresh, reused and after a hot reload."""
    told, runs = plain.luigi_then_served("timeout_chain", "core", "", "SlowTask", "--log-level", "INFO")
    assert "timed out after 1 seconds and was terminated" in told, told
    wait_until(functools.partial(ended_process, int((plain.out / "slow-0").read_text())))
    for n, run in runs:
        assert (run.state, run.failed_step) == (RunState.FAILED, "SlowTask"), run
        assert run.error is not None and re.fullmatch(
            rf"Task SlowTask_{n}_\w+ timed out after 1 seconds and was terminated\.", run.error
        ), run.error
        step = int((plain.out / f"slow-{n}").read_text())
        assert step != pid_of(run), "the step ran in the attempt's own process"
        wait_until(functools.partial(ended_process, step))


def test_a_step_within_its_worker_timeout_is_made_in_a_process_of_its_own_and_recorded_done(plain: Plain) -> None:
    """The same step within its ``worker_timeout``: made, its step DONE in the registry as the run's other steps
    (written by the step's process, as a step of ``workers = N``), its dependency asked as often as by luigi."""
    told, runs = plain.luigi_then_served("timed_chain", "core", "", "TimedTask", "--log-level", "INFO")
    assert "1 ran successfully" in told or "2 ran successfully" in told, told
    expected = asked(plain.out, 0)
    for n, run in runs:
        assert run.state == RunState.DONE, run
        steps = {step.task: step.state for step in plain_steps(plain, run)}
        assert steps == {"TimedTask": "DONE", "Counted": "DONE"}, (run.worker, steps)
        assert asked(plain.out, n) == expected, (run.worker, expected)


def plain_steps(plain: Plain, run: Run) -> list[Step]:
    """The steps the registry holds of ``run``."""
    return closed_at_end(Nectar(plain.settings)).steps(run.id)


def ended_process(pid: int) -> bool:
    """Whether the process ``pid`` has ended (a zombie not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def asked(out: Path, n: int, file: str = "complete") -> Counter[str]:
    """How many times each task's ``complete()`` (or ``requires()``: ``file``) was asked for ``n``, by family, by any
    process but this one (the submission's dedupe asks the task's ``complete()`` here)."""
    path = out / f"{file}-{n}"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(family for pid, family in map(str.split, lines) if int(pid) != os.getpid())


@pytest.mark.parametrize("task", ["TopTask", "DynamicTask"])
def test_a_local_build_asks_each_complete_as_often_as_luigi(plain: Plain, task: str) -> None:
    """Without luigid (luigi's local scheduler; the service's steps under their locks, :mod:`nectar.step_locks`):
    each task's ``complete()`` asked by the attempt as often as by ``python -m luigi --local-scheduler``, for a task
    with a dependency done and one undone, and one with a dynamic dependency; the step's lock, taken as luigi asks,
    says whether a run made the step since (``tests/nectar/test_step_locks*``: two runs never both make it)."""
    for n in range(REUSE_WITHIN + 1):  # luigi's run (0) and every run the service may be asked
        (plain.out / f"ThereTask-{n}").write_text("there\n")
    told, runs = plain._replace(luigid=None).luigi_then_served("local_chain", "worker", "", task)
    expected = asked(plain.out, 0)
    assert expected[task] >= 1 and (plain.out / f"{task}-0").exists(), told
    for n, run in runs:
        assert run.state == RunState.DONE, run
        assert asked(plain.out, n) == expected, (run.worker, expected)


OUTAGE_CHAIN = (
    CHAIN
    + """
from nectar.errors import StoreUnavailable


class OutageData(Counted):
    def complete(self):
        gate = os.path.join(os.environ["PLAIN62_OUT"], f"outage-{self.n}")
        if os.path.exists(gate):  # the store out for this one ask
            os.unlink(gate)
            raise StoreUnavailable("the store cannot be reached")
        return super().complete()


class NeedsOutageDataTask(Counted):
    def requires(self):
        return OutageData(n=self.n)
"""
)


@pytest.mark.parametrize("pool", [False, True], ids=["in-process", "scheduling-pool"])
def test_a_store_outage_in_a_dependencys_complete_is_retried_wherever_luigi_asked_it(plain: Plain, pool: bool) -> None:
    """A dependency's ``complete()`` that raises ``StoreUnavailable`` (the store out for that ask) fails the attempt
    told in a line, and the run is retried (then DONE), whether luigi's worker asked it in the attempt's process or in
    a process of its scheduling pool (``[core] parallel_scheduling``), fresh, reused and after a hot reload. Before,
    the pool's answer came back as luigi's text alone: the run FAILED, not retried, where the same outage asked in the
    attempt's process was retried."""
    plain.write_chain("plain62/outage_chain", OUTAGE_CHAIN)
    project = Path(__file__).resolve().parents[2] / "configuration" / "luigi.cfg"
    config = plain.out / "luigi.cfg"
    lines = "parallel_scheduling = true\nparallel_scheduling_processes = 2\n" if pool else ""
    config.write_text(project.read_text().replace("[core]\n", f"[core]\n{lines}"))

    def outage(n: int) -> None:
        (plain.out / f"outage-{n}").write_text("out\n")

    for n, run in plain.served("outage_chain", OUTAGE_CHAIN, "NeedsOutageDataTask", config, retries=1, before=outage):
        assert (run.state, run.attempt) == (RunState.DONE, 2), (run.state, run.attempt, run.error, run.worker)
        assert not (plain.out / f"outage-{n}").exists()  # the outage was met (the first attempt's)


#: a chain's task noting luigi's ``[plaingaps] word`` in ``run()``; ``{head}`` and ``{name}`` its chain's own
NOTING = """
import os

import luigi
{head}

class {name}(luigi.Task):
    n = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(os.environ["PLAIN62_OUT"], f"word-{{self.n}}"))

    def run(self):
        with self.output().open("w") as out:
            out.write(luigi.configuration.get_config().get("plaingaps", "word", "none"))
"""
#: ``leak_a_chain`` sets an option and registers a handler on ``luigi.Task`` as it is imported
SETTING = """
config = luigi.configuration.get_config()
if not config.has_section("plaingaps"):
    config.add_section("plaingaps")
config.set("plaingaps", "word", "a")


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def handled(task):
    with open(os.path.join(os.environ["PLAIN62_OUT"], f"handled-{task.n}"), "a") as out:
        out.write("a\\n")
"""
LEAKS = {
    "leak_a_chain": ("NoteTask", NOTING.format(head=SETTING, name="NoteTask")),
    "leak_b_chain": ("OtherTask", NOTING.format(head="", name="OtherTask")),
    "leak_c_chain": ("ImporterTask", NOTING.format(head="import chains.plain62.leak_a_chain\n", name="ImporterTask")),
}


def test_a_chains_handlers_and_options_reach_only_its_own_runs_and_its_importers_in_a_reused_process(
    plain: Plain, chains_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``leak_a_chain`` sets a luigi option and registers a handler on ``luigi.Task`` as it is imported;
    ``leak_b_chain`` does not import it, ``leak_c_chain`` does. Under ``python -m luigi --module <chain>`` (a process
    each) b's task reads no option and no handler of a's fires for it; a's and c's read the option and a's handler
    fires. The same in the service's runs, a then b then c, in one process (reused) and after hot reloads of b and c.
    Before, b's run read a's option and a's handler fired for it; and c's run after a hot reload, in a process where a
    was imported during an earlier run of c, read none of a's options (put back after that run, a not executed
    again)."""
    for chain, (_, source) in LEAKS.items():
        plain.write_chain(f"plain62/{chain}", source)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(chains_dir.parent), os.environ.get("PYTHONPATH", "")]))
    )
    config = plain.out / "luigi.cfg"
    config.write_text((Path(__file__).resolve().parents[2] / "configuration" / "luigi.cfg").read_text())
    expected = {}
    assert plain.luigid is not None
    for n, (chain, (task, _)) in enumerate(LEAKS.items()):
        module = f"chains.plain62.{chain}"
        argv = [sys.executable, "-m", "luigi", "--module", module, task, "--n", str(n), "--scheduler-url", plain.luigid]
        env = {**os.environ, "LUIGI_CONFIG_PATH": str(config), **lifeline_env()}
        done = subprocess.run(argv, env=env, cwd=chains_dir.parent, capture_output=True, text=True, timeout=120)
        assert (plain.out / f"word-{n}").exists(), done.stdout + done.stderr
        expected[chain] = seen(plain.out, n)
    assert expected == {"leak_a_chain": ("a", "a\n"), "leak_b_chain": ("none", ""), "leak_c_chain": ("a", "a\n")}
    served = plain.settings.replace(scheduler_url=plain.luigid, luigi_config=config, spare_idle=KEPT)
    nectar = closed_at_end(Nectar(served))
    plain.start_worker(served, workers=1)
    runs: list[tuple[str, int, Run]] = []

    def a_round() -> bool:
        """a, b, c and a again run (b and c changed from the second round on: hot reloads), until b and c ran in
        processes that ran a before."""
        if runs:
            for chain in ("leak_b_chain", "leak_c_chain"):
                plain.write_chain(f"plain62/{chain}", LEAKS[chain][1] + f"\n# round {len(runs)}\n")
        ran_a = {pid_of(run) for chain, _, run in runs if chain == "leak_a_chain"}
        for chain in [*LEAKS, "leak_a_chain"]:
            n = 100 + len(runs)
            submission = nectar.submit("plain62", chain, LEAKS[chain][0], {"n": n})
            assert submission.run is not None
            runs.append((chain, n, ended(nectar, submission.run.id)))
            if chain == "leak_a_chain":
                ran_a.add(pid_of(runs[-1][2]))
            elif not (reused(runs[-1][2]) and pid_of(runs[-1][2]) in ran_a):
                ran_a.add(0)  # not this round
        return 0 not in ran_a

    wait_until(a_round, timeout=120, interval=0)
    wait_until(a_round, timeout=120, interval=0)  # a second round so, c changed (read again) after c ran
    for chain, n, run in runs:
        assert run.state == RunState.DONE, (chain, run.error)
        assert seen(plain.out, n) == expected[chain], (chain, run.worker)


def seen(out: Path, n: int) -> tuple[str, str]:
    """What the task of ``n`` read of ``[plaingaps] word``, and what a's handler noted of it."""
    handled = out / f"handled-{n}"
    return (out / f"word-{n}").read_text(), handled.read_text() if handled.exists() else ""
