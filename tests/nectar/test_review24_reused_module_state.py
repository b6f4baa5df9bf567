"""review24 (round 70): what a run leaves in the standard library's own state, which a reused attempt process
(``NECTAR_RUNS_PER_PROCESS`` > 1, :mod:`nectar.reuse`) hands to the next run in its process, where ``python -m luigi``
(a process a run) starts each run from the interpreter's defaults. ``reuse.put_back`` puts back the locale, the time
zone, the environment, the working folder and more (review16's locale, round 62's zone); not these:

- ``decimal``'s context: a run that sets its precision (``decimal.getcontext().prec = 4``: money rounded as a report
  wants it) leaves the next run's arithmetic at 4 digits: its sums rounded, DONE, nothing said;
- ``tempfile.tempdir``: a run that points the temporary folder at a scratch folder of its own and removes it at its end
  leaves the next run's ``tempfile.NamedTemporaryFile()`` in a folder that is gone: the run FAILED for a cause not
  its own;
- the process's resource limits (``resource.setrlimit``: a run capping its address space at 32 GiB, as a task
  guarding its machine's memory may) stay on every later run of its process (a larger input's run then meets
  ``MemoryError``), where the file mode mask, a process attribute too, is put back; so does its priority
  (``os.nice(5)``: a heavy batch yielding to interactive work; a process cannot raise it back unprivileged, so the
  process should take no other run, as after a thread left running): every later run of the process at nice 5;
- the signal mask (``signal.pthread_sigmask``: a run that blocks SIGTERM for a section a stop must not cut and does
  not unblock it): every later run of its process has SIGTERM blocked, the signal the worker interrupts an attempt
  with (``Executor._kill``: a cancel, a timeout, the worker's stop), held pending until the grace's SIGKILL; the
  signal handlers are put back, not the mask;
- ``sys.argv`` (a run that calls a command-line tool's ``main()`` in process, its arguments set in ``sys.argv``, a
  common way to call one): every later run's library that parses the command line (``argparse``'s default, absl's
  flags) reads that run's arguments, another input file, silently;
- ``urllib.request``'s opener (``install_opener``: a run sending its API's token on each ``urlopen``, as urllib's
  documentation shows): every later run's ``urlopen``, whatever its chain, sends that token to whatever host it asks.

Each case, on one worker for them all: the reader task run once (what it reads before its setter ran), the setter once
(its process noted), then the reader again until a run lands in the setter's process (a count, not a time): it must read
what the first read. The README's caveat (what the modules a chain imports keep, a cache, a client, is seen by the next
runs of its process, as under Celery) is about a chain's libraries; these are the interpreter's and the process's own
state, as the locale and the file mode mask that are put back, and nothing says a run's setting of them outlives it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nectar.config import Settings
from nectar.keys import TargetKey
from nectar.registry import Run, RunState, open_run_store
from tests.helpers.reused_runs import run_to_end
from tests.helpers.suitenectarB_worker import module_settings, module_worker, write_chain_file

#: the md5 of ``{}``: a parameterless task's key
EMPTY = "99914b932bd37a50b983c5e7c90ae93b"

CHAIN = """
import decimal
import os
import resource
import shutil
import signal
import sys
import urllib.request
import tempfile

from nectar import NectarTask


class SetsPrecisionTask(NectarTask):  # money to 4 significant digits, as its report wants
    def run(self):
        decimal.getcontext().prec = 4
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {decimal.Decimal(1) / decimal.Decimal(3)}")


class SumsMoneyTask(NectarTask):  # sums amounts at the default context: 28 digits
    def run(self):
        total = sum([decimal.Decimal("1234.5678"), decimal.Decimal("0.0001")], decimal.Decimal(0))
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {total}")


class ScratchTempTask(NectarTask):  # its temporary files in a scratch folder of its own, removed at its end
    def run(self):
        scratch = tempfile.mkdtemp(prefix="review24-scratch-")
        tempfile.tempdir = scratch
        try:
            with tempfile.NamedTemporaryFile() as spill:
                spill.write(b"x")
        finally:
            shutil.rmtree(scratch)
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {scratch}")


class UsesTempTask(NectarTask):  # a temporary file where the interpreter says
    def run(self):
        with tempfile.NamedTemporaryFile() as spill:
            spill.write(b"x")
            where = os.path.dirname(spill.name)
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {where}")


class CapsMemoryTask(NectarTask):  # its address space capped, as a task guarding its machine's memory may
    def run(self):
        resource.setrlimit(resource.RLIMIT_AS, (32 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} capped")


class ReadsLimitTask(NectarTask):  # the address space it may use
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {resource.getrlimit(resource.RLIMIT_AS)}")


class YieldsTask(NectarTask):  # a heavy batch that yields the CPU to interactive work
    def run(self):
        os.nice(5)
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} niced")


class ReadsNiceTask(NectarTask):  # the priority it runs at
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {os.nice(0)}")


class HoldsStopsTask(NectarTask):  # a section that must not be cut by a stop, its unblock forgotten
    def run(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} held")


class ReadsMaskTask(NectarTask):  # the signals blocked as it runs
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))}")


class CallsToolTask(NectarTask):  # calls a command-line tool's main() in process, its arguments in sys.argv
    def run(self):
        sys.argv = ["tool", "--input", "/data/2019/sales.csv"]
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} called")


class ReadsArgvTask(NectarTask):  # a library that parses the command line (argparse's default, absl's flags)
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {sys.argv[1:]}")


class SignsInTask(NectarTask):  # its API's token on every urlopen of its run, as urllib's documentation shows
    def run(self):
        opener = urllib.request.build_opener()
        opener.addheaders = [("Authorization", "Bearer chain-a-secret")]
        urllib.request.install_opener(opener)
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} signed")


class FetchesTask(NectarTask):  # the headers its urlopen() would send (the opener urllib.request.urlopen uses)
    def run(self):
        opener = urllib.request._opener or urllib.request.build_opener()
        with self.output().open("w") as out:
            out.write(f"{os.getpid()} {[name for name, _ in opener.addheaders]}")
"""


@pytest.fixture(scope="module")
def reusing(luigid: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One ``nectar worker --workers 1`` for every case (its attempt processes take up to 1,000 runs, the default),
    the chain written before it starts: each case's states are its own (a decimal context, a folder, a limit...)."""
    settings = module_settings(tmp_path_factory.mktemp("review24"), scheduler_url=luigid)
    write_chain_file(settings, "review24/state_chain", CHAIN)
    with module_worker(settings):
        yield settings


@pytest.mark.parametrize(
    ("setter", "reader"),
    [
        ("SetsPrecisionTask", "SumsMoneyTask"),
        ("ScratchTempTask", "UsesTempTask"),
        ("CapsMemoryTask", "ReadsLimitTask"),
        ("YieldsTask", "ReadsNiceTask"),
        ("HoldsStopsTask", "ReadsMaskTask"),
        ("CallsToolTask", "ReadsArgvTask"),
        ("SignsInTask", "FetchesTask"),
    ],
)
def test_a_reused_process_hands_the_next_run_the_standard_librarys_defaults(
    reusing: Settings, setter: str, reader: str
) -> None:
    settings = reusing

    def logged() -> str:
        return "".join(log.read_text(errors="replace")[-3000:] for log in settings.data_dir.parent.glob("*.log"))

    read_key = TargetKey("review24", "state_chain", reader, EMPTY)
    with open_run_store(settings) as runs:
        first, _, expected = run_to_end(settings, runs, read_key)
        assert first.state == RunState.DONE, (first.error, logged())
        set_run, set_pid, _ = run_to_end(settings, runs, TargetKey("review24", "state_chain", setter, EMPTY))
        assert set_run.state == RunState.DONE, (set_run.error, logged())
        after: list[tuple[Run, str, str]] = []
        # a reused process takes a later run, not always the next one (a spare forked meanwhile may): at most 20 runs
        while len(after) < 20 and (
            not after or after[-1][0].worker is None or f":{set_pid}." not in after[-1][0].worker
        ):
            after.append(run_to_end(settings, runs, read_key))
    landed = after[-1][0]
    assert landed.worker is not None and f":{set_pid}." in landed.worker, f"no run landed in {set_pid}: {after}"
    assert (landed.state, after[-1][2]) == (RunState.DONE, expected), (
        f"{reader} after {setter} in its process {landed.worker}: {landed.state.value} {after[-1][2]!r} "
        f"{landed.error or ''} (before its setter ran: {expected!r})"
    )
