"""The ledger of task executions the fault and scale-out suites count: a chain whose tasks write each execution
(``start``, then ``end`` or ``fail``: one ``os.write`` on an ``O_APPEND`` descriptor per line), the harness's own
``kill`` and ``freeze`` lines for each process it signals, and what they add up to."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections import Counter
from pathlib import Path

CHAIN_TYPE, CHAIN = "faults", "ledger_chain"

LEDGER_CHAIN = '''"""Tasks that write each execution to a ledger: start, then end or fail."""

import os
import time

import luigi

from nectar import NectarTask

LEDGER = @LEDGER@


def note(word, task_id):
    line = f"{word} {task_id} {os.getpid()} {time.time():.6f}\\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def starts(task_id):
    with open(LEDGER) as handle:
        return sum(1 for line in handle if line.split()[:2] == ["start", task_id])


def started_here(task_id):
    """Whether this process's last line about the task is its start: an execution that has not said how it ended."""
    with open(LEDGER) as handle:
        words = [line.split()[0] for line in handle if line.split()[1:3] == [task_id, str(os.getpid())]]
    return words[-1:] == ["start"]


class Recorded(NectarTask):
    """The k-th start of a task sleeps the k-th of ``sleeps`` (the last repeats), then waits until the file
    ``gate`` exists (if one is named); its first ``fails`` starts fail."""

    n = luigi.IntParameter(default=0)
    sleeps = luigi.Parameter(default="0")
    fails = luigi.IntParameter(default=0)
    gate = luigi.Parameter(default="")

    def run(self):
        # one try from before the start line to after the end line: an interruption (a signal's handler raising in
        # this thread) lands between any two bytecodes, and one right after the start line is a fail too
        try:
            note("start", self.task_id)
            k = starts(self.task_id) - 1
            plan = [float(s) for s in self.sleeps.split(",")]
            time.sleep(plan[min(k, len(plan) - 1)])
            while self.gate and not os.path.exists(self.gate):
                time.sleep(0.01)
            if k < self.fails:
                raise RuntimeError(f"planned failure {k + 1} of {self.fails}")
            with self.output().open("w") as out:
                out.write(f"{self.task_id} {os.getpid()}\\n")
            note("end", self.task_id)
        except BaseException:
            if started_here(self.task_id):  # not stopped before its start line, nor after its end line
                note("fail", self.task_id)
            raise


class LedgerTask(Recorded):
    """One step."""


class Step1Task(Recorded):
    """First of three steps."""


class Step2Task(Recorded):
    def requires(self):
        return Step1Task(n=self.n)


class Step3Task(Recorded):
    step2_fails = luigi.IntParameter(default=0)

    def requires(self):
        return Step2Task(n=self.n, fails=self.step2_fails)


class NoRetryTask(Recorded):
    retries = 0


class FourAttemptsTask(Recorded):
    retries = 3
    retry_delay = 0.1


class PooledTask(Recorded):
    """Takes the one slot of a pool that luigid shares out among every worker."""

    resources = {"ledger_pool": 1}
'''


def whole_lines(path: Path) -> list[str]:
    """The lines of the file at ``path`` (none if it does not exist) whose newline is written. A line another
    process is appending may be read half-way, even one made by one ``write``: a write that crosses a page of the
    file makes its first part readable first. That part is left to the next read."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


@dataclasses.dataclass
class Execution:
    """One run() of one luigi task in one process."""

    task_id: str
    pid: int
    start: float
    end: float | None = None
    #: a ``fail`` line, or the harness killed or froze the process
    stop: float | None = None

    @property
    def until(self) -> float:
        """When it stopped executing (infinity: it never said, and was not killed or frozen)."""
        return min(t for t in (self.end, self.stop, math.inf) if t is not None)

    def named(self, task: str) -> bool:
        return f".{task}_" in self.task_id


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def note(self, word: str, pid: int) -> None:
        """The harness's own line about a process it signals."""
        line = f"{word} - {pid} {time.time():.6f}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def lines(self) -> list[tuple[str, str, int, float]]:
        rows = []
        for line in whole_lines(self.path):
            word, task_id, pid, stamp = line.split()
            rows.append((word, task_id, int(pid), float(stamp)))
        return rows

    def executions(self) -> list[Execution]:
        executions: list[Execution] = []
        current: dict[tuple[str, int], Execution] = {}
        for word, task_id, pid, stamp in self.lines():
            if word == "start":
                current[(task_id, pid)] = execution = Execution(task_id, pid, stamp)
                executions.append(execution)
            elif word in ("end", "fail") and (task_id, pid) in current:
                execution = current[(task_id, pid)]
                if word == "end":
                    execution.end = stamp
                elif execution.stop is None:
                    execution.stop = stamp
            elif word in ("kill", "freeze"):
                for execution in executions:
                    if execution.pid == pid and execution.until == math.inf:
                        execution.stop = stamp
        return executions

    def of(self, task: str) -> list[Execution]:
        return [e for e in self.executions() if e.named(task)]

    def count(self, word: str, task: str | None = None) -> int:
        return sum(1 for w, task_id, _, _ in self.lines() if w == word and (task is None or f".{task}_" in task_id))

    def duplicates(self) -> list[Execution]:
        """Executions that ended after another of the same task had, or overlapped another in time."""
        duplicates: list[Execution] = []
        ended: Counter[str] = Counter()
        executions = self.executions()
        for execution in sorted((e for e in executions if e.end is not None), key=lambda e: e.end or 0):
            ended[execution.task_id] += 1
            if ended[execution.task_id] > 1:
                duplicates.append(execution)
        for a, b in itertools.combinations(executions, 2):
            if a.task_id == b.task_id and a.start < b.until and b.start < a.until:
                later = b if b.start >= a.start else a
                if later not in duplicates:
                    duplicates.append(later)
        return duplicates
