"""Benchmark tasks: a probe that notes when its run() starts, a fan-out of trivial leaves, a wrapper over sleeping
steps, a big file, a task a schedule fires, a task a trigger runs for each landed object, the soak's step."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import luigi

from nectar import NectarTask

#: where the tasks note what the benchmarks measure (read when a task runs, never at import)
LEDGER_VAR = "NECTAR_BENCH_LEDGER"


def note(*words: object) -> None:
    """Append one line to the ledger, in one write (the benchmark reads it while tasks run)."""
    line = " ".join(str(w) for w in words) + "\n"
    fd = os.open(os.environ[LEDGER_VAR], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class ProbeTask(NectarTask):
    """Note the time its run() starts, then write a word."""

    n: int = luigi.IntParameter()

    def run(self) -> None:
        note("start", self.n, f"{time.time():.6f}")
        with self.output().open("w") as out:
            out.write("probe\n")


class SoakTask(NectarTask):
    """The soak's step: hold ``hold`` seconds (at a ``gate`` first, if given: until that file exists, noting that it
    waits there), write a word, then note that it did (the soak counts the notes: one a key, killed attempts too)."""

    n: int = luigi.IntParameter()
    hold: float = luigi.FloatParameter(default=0.0)
    gate: str = luigi.Parameter(default="")

    def run(self) -> None:
        if self.gate:
            note("gated", self.n)
            while not Path(self.gate).exists():
                time.sleep(0.01)
        time.sleep(self.hold)
        with self.output().open("w") as out:
            out.write(f"soak {self.n}\n")
        note("soaked", self.n)


class FireTask(NectarTask):
    """A trivial step a schedule fires: ``at`` receives the fire time, so each fire is a run of its own."""

    n: int = luigi.IntParameter()
    at: datetime.datetime = luigi.DateSecondParameter()

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write(f"{self.n} {self.at}\n")


class LandedTask(NectarTask):
    """A trivial step a trigger runs for each object that lands: ``path`` receives the object's URI."""

    path: str = luigi.Parameter()

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write(f"{self.path}\n")


class LeafTask(NectarTask):
    """A trivial step."""

    i: int = luigi.IntParameter()
    salt: str = luigi.Parameter(default="")

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write(f"{self.i}\n")


class FanoutTask(NectarTask):
    """Requires ``size`` leaves; ``salt`` makes a fresh set of them."""

    size: int = luigi.IntParameter(default=1000)
    salt: str = luigi.Parameter(default="")

    def requires(self) -> list[LeafTask]:
        return [LeafTask(i=i, salt=self.salt) for i in range(self.size)]

    def run(self) -> None:
        with self.output().open("w") as out:
            out.write(f"{self.size}\n")


class SleepTask(NectarTask):
    """A step that takes ``seconds``."""

    i: int = luigi.IntParameter()
    seconds: float = luigi.FloatParameter(default=1.0)
    salt: str = luigi.Parameter(default="")

    def run(self) -> None:
        time.sleep(self.seconds)
        with self.output().open("w") as out:
            out.write(f"{self.i}\n")


class SleepersTask(luigi.WrapperTask):
    """A wrapper over ``size`` independent steps of ``seconds`` each (luigi's foo example's shape)."""

    size: int = luigi.IntParameter(default=10)
    seconds: float = luigi.FloatParameter(default=1.0)
    salt: str = luigi.Parameter(default="")

    def requires(self) -> list[SleepTask]:
        return [SleepTask(i=i, seconds=self.seconds, salt=self.salt) for i in range(self.size)]


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM) since :func:`reset_peak_rss`, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0): the peak is then this task's own."""
    Path("/proc/self/clear_refs").write_text("5")


class BigFileTask(NectarTask):
    """Write ``mb`` MiB to out.txt, then note the peak RSS of this process (the upload included)."""

    mb: int = luigi.IntParameter()

    def run(self) -> None:
        reset_peak_rss()
        chunk = "0123456789abcdef" * (1 << 16)  # 1 MiB
        with self.output().open("w") as out:
            for _ in range(self.mb):
                out.write(chunk)
        note("peak_rss", self.mb, peak_rss_kb())
