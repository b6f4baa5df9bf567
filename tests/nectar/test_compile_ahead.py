"""A worker compiles a claimed run's chain file for the attempts it forks next, reading it only when its stamp
(mtime, size: one stat) changed since; an attempt compiles what the file's bytes say regardless."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.attempt import chain_file
from nectar.config import Settings
from nectar.executor import Executor
from nectar.registry import Run
from nectar.service import Nectar
from tests.helpers.registries import closed_at_end
from tests.nectar.test_chain_code import recorded_reads

CHAIN = """
import luigi
from nectar import NectarTask


class EchoTask(NectarTask):
    n = luigi.IntParameter()
    VALUE = {value!r}

    def run(self):
        with self.output().open("w") as out:
            out.write(self.VALUE)
"""


def test_a_claimed_runs_chain_file_is_read_again_only_when_its_stamp_changed(
    settings: Settings, write_chain: Callable[[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_chain("echo/echo_chain", CHAIN.format(value="a"))
    submission = closed_at_end(Nectar(settings)).submit("echo", "echo_chain", "EchoTask", {"n": 1})
    assert isinstance(submission.run, Run)
    executor = closed_at_end(Executor(settings))
    reads = recorded_reads(monkeypatch)

    def claimed(run: Run) -> None:
        """As the worker claims ``run``: its file's stamp taken (one stat), then compiled if it changed."""
        found = chain_file(settings, run)
        executor._compile_ahead(run, found, executor._likely_after(run, found))

    claimed(submission.run)
    claimed(submission.run)  # unchanged: one stat, no read
    assert reads == [path]

    was = path.stat()
    path.write_text(CHAIN.format(value="bb"))  # a rewrite within one tick of the mtime's clock, one byte longer
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    claimed(submission.run)
    assert reads == [path, path]


def test_a_chain_files_path_is_joined_once_per_chain(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """The worker's loop asks a claimed run's chain file as it claims and compiles it, its attempt as it loads the
    task: the path is joined once for the chain (the same path each ask), not at each ask (two joins each: ~10% of
    the loop's Python time)."""
    path = write_chain("echo/echo_chain", CHAIN.format(value="a"))
    submission = closed_at_end(Nectar(settings)).submit("echo", "echo_chain", "EchoTask", {"n": 1})
    assert isinstance(submission.run, Run)
    first, *again = (chain_file(settings, submission.run) for _ in range(3))
    assert first == path
    assert all(found is first for found in again), "the chain file's path was joined again at each ask"
