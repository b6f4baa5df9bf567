"""What a step's recording costs the store: params.txt, then both logs in one commit; a local store takes the live
logs as they are (moved, not copied); a log that the S3 copy already holds is not sent again."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import luigi
import pytest

from nectar import fence
from nectar.catalog import ChainCatalog
from nectar.config import Settings, configure
from nectar.errors import LeaseLost
from nectar.keys import OUTPUT_FILE, PARAMS_FILE, STDERR_FILE, STDOUT_FILE
from nectar.logs import ahead
from nectar.logs.capture import open_log
from nectar.stores import get_store
from nectar.task import NectarTask, live_log_paths
from tests.helpers.calls import file_calls

WriteChain = Callable[[str, str], Path]

CHAIN = """
import os

from nectar import NectarTask


class InodeTask(NectarTask):
    def run(self):
        print(os.fstat(1).st_ino)  # the file its stdout is
        with self.output().open("w") as out:
            out.write("done")
"""


@pytest.fixture
def commits() -> Iterator[list[str]]:
    """What each commit of this process asked the fence for, in order (every commit allowed)."""
    asked: list[str] = []
    fence.install(asked.append)
    yield asked
    fence.install(None)


def built(settings: Settings, write_chain: WriteChain, chain: str, source: str, name: str) -> NectarTask:
    """The task ``name`` of the chain ``logs/<chain>`` written from ``source``, once luigi has built it."""
    write_chain(f"logs/{chain}", source)
    task = ChainCatalog(settings.chains_dir).task("logs", chain, name).instantiate({})
    assert isinstance(task, NectarTask)
    assert luigi.build([task], local_scheduler=True, workers=1) is True
    return task


def test_a_step_commits_params_its_output_and_both_logs_at_once_and_its_live_logs_are_moved(
    settings: Settings, write_chain: WriteChain, commits: list[str]
) -> None:
    task = built(settings, write_chain, "inode_chain", CHAIN, "InodeTask")

    store = get_store(settings)
    key = task.target_key
    # three commits, not four: the two logs pass the fence together
    assert commits == [store.describe(key.with_file(name)) for name in (PARAMS_FILE, OUTPUT_FILE, STDOUT_FILE)]
    stdout = Path(store.describe(key.with_file(STDOUT_FILE)))
    ran_on = int(stdout.read_text())
    assert os.stat(stdout).st_ino == ran_on  # the very file the task wrote: moved, not copied
    assert os.stat(stdout).st_nlink == 1 and store.read_text(key.with_file(STDERR_FILE)) == ""
    assert json.loads(store.read_text(key.with_file(PARAMS_FILE)))["task_id"] == task.task_id
    assert not any(path.exists() for path in live_log_paths(key))
    # nor a folder: a step leaves no empty folder behind, one per key ever run, for as long as the data lives
    assert list(settings.live_logs_dir.iterdir()) == []


def test_a_local_step_s_end_removes_no_live_log_the_store_took(
    settings: Settings, write_chain: WriteChain, commits: list[str]
) -> None:
    """The local store takes the logs it is given to move (a rename): nothing is left to remove, and nothing is."""
    with file_calls() as calls:
        task = built(settings, write_chain, "inode_chain", CHAIN, "InodeTask")

    live = str(settings.live_logs_dir)
    assert [path for event, path in calls if event == "os.remove" and path.startswith(live)] == []
    assert sum(event == "os.rename" and path.startswith(live) for event, path in calls) == 2
    assert not any(path.exists() for path in live_log_paths(task.target_key))


WHERE_CHAIN = """
import os

from nectar import NectarTask


class WhereTask(NectarTask):
    def run(self):
        print(os.readlink("/proc/self/fd/1"))  # where its stdout is written while it runs
        with self.output().open("w") as out:
            out.write("done")
"""


def test_a_running_steps_live_logs_are_files_of_the_live_logs_folder_itself(
    settings: Settings, write_chain: WriteChain, commits: list[str]
) -> None:
    """No folder is made for a step's live logs, nor removed after it (each cost ~100-200 µs on ext4)."""
    task = built(settings, write_chain, "where_chain", WHERE_CHAIN, "WhereTask")

    key = task.target_key
    written_to = Path(get_store(settings).read_text(key.with_file(STDOUT_FILE)).strip())
    assert written_to == live_log_paths(key)[0]
    assert written_to.parent == settings.live_logs_dir.resolve()
    stem = f"chains.logs.where_chain.WhereTask.{key.digest}"  # the task's folder, its slashes dots
    assert [path.name for path in live_log_paths(key)] == [f"{stem}.stdout.log", f"{stem}.stderr.log"]
    assert [path.parent for path in live_log_paths(key)] == [settings.live_logs_dir] * 2
    assert list(settings.live_logs_dir.iterdir()) == []


def test_a_step_after_the_settings_changed_writes_its_live_logs_in_the_new_live_logs_folder(
    settings: Settings, write_chain: WriteChain, commits: list[str], tmp_path: Path
) -> None:
    """The live logs folder is kept per settings (its text is not joined anew per step), never past a change."""
    first = built(settings, write_chain, "where_chain", WHERE_CHAIN, "WhereTask")
    assert Path(get_store(settings).read_text(first.target_key.with_file(STDOUT_FILE)).strip()).parent == (
        settings.live_logs_dir.resolve()
    )
    moved = settings.replace(data_dir=tmp_path / "moved", local_targets_dir=tmp_path / "moved_targets")
    configure(moved)

    task = built(moved, write_chain, "where_chain", WHERE_CHAIN, "WhereTask")

    written_to = Path(get_store(moved).read_text(task.target_key.with_file(STDOUT_FILE)).strip())
    assert written_to == live_log_paths(task.target_key)[0]
    assert written_to.parent == moved.live_logs_dir.resolve() != settings.live_logs_dir.resolve()


def test_a_step_started_after_its_logs_were_made_ahead_logs_to_those_very_files(
    settings: Settings, write_chain: WriteChain, commits: list[str]
) -> None:
    """A spare makes its first step's two live logs ahead (their inodes off the step's start): the step's stdout is
    one of them, named as a live log, moved to the store whole; a process with none made ahead creates its own."""
    ahead.make_ahead(settings.live_logs_dir)
    made = ahead._made
    if made is None:  # ext4, tmpfs, xfs... make them; overlayfs before Linux 6.6 does not (steps create theirs)
        pytest.skip("the live logs folder's file system makes no anonymous files (O_TMPFILE)")
    inodes = {os.fstat(fd).st_ino for fd in made[3]}
    assert os.listdir(settings.live_logs_dir) == []  # nameless until a step starts

    task = built(settings, write_chain, "inode_chain", CHAIN, "InodeTask")

    stored = Path(get_store(settings).describe(task.target_key.with_file(STDOUT_FILE)))
    ran_on = int(stored.read_text())
    assert ran_on in inodes and os.stat(stored).st_ino == ran_on and os.stat(stored).st_nlink == 1
    assert ahead._made is not None and ahead._made[3] == []  # both taken: the next step creates its own
    assert list(settings.live_logs_dir.iterdir()) == []
    ahead.discard()


def test_the_live_logs_folder_is_opened_once_for_the_logs_of_every_step(settings: Settings) -> None:
    """A process makes each step's two live logs in the folder it opened for its first step's: not a close, an open
    and three walks of its path per step; a folder removed since is opened (made) again."""
    folder = settings.live_logs_dir
    ahead.make_ahead(folder)
    if ahead._made is None:  # as above: no anonymous files on this file system
        pytest.skip("the live logs folder's file system makes no anonymous files (O_TMPFILE)")
    try:
        for step in range(3):
            for stream in ("stdout", "stderr"):
                taken = ahead.take(folder / f"step{step}.{stream}.log")
                assert taken is not None
                taken.close()
            if step == 2:
                shutil.rmtree(folder)
            with file_calls() as calls:
                ahead.make_ahead(folder)
            opened = [path for event, path in calls if event == "open"]
            if step < 2:  # two files in the folder kept open
                assert opened == [".", "."]
            else:  # none in the folder removed, then the folder made and opened, two files in it
                assert (
                    opened[0] == "."
                    and opened[1:-2]
                    and set(opened[1:-2]) == {str(folder)}
                    and opened[-2:] == [".", "."]
                )
        taken = ahead.take(folder / "step3.stdout.log")
        assert taken is not None
        taken.close()
        assert os.listdir(folder) == ["step3.stdout.log"]
    finally:
        ahead.discard()


QUIET_CHAIN = """
from nectar import NectarTask


class QuietTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("done")
"""


def test_a_log_that_s3_already_holds_is_not_sent_again_when_the_step_ends(
    s3_settings: Settings, write_chain: WriteChain, commits: list[str]
) -> None:
    configure(s3_settings.replace(env="test", log_sync_interval=60.0))
    write_chain("logs/quiet_chain", QUIET_CHAIN)
    task = ChainCatalog(s3_settings.chains_dir).task("logs", "quiet_chain", "QuietTask").instantiate({})
    assert isinstance(task, NectarTask)

    assert luigi.build([task], local_scheduler=True, workers=1) is True

    store = get_store()
    key = task.target_key
    logs = store.describe(key.with_file(STDOUT_FILE))
    # the logs' first copy (made as the task starts, in a thread of its own) was their last: empty then and now
    assert sorted(commits) == sorted([store.describe(key.with_file(PARAMS_FILE)), logs, store.describe(key)])
    assert store.read_text(key.with_file(STDOUT_FILE)) == store.read_text(key.with_file(STDERR_FILE)) == ""
    assert not any(path.exists() for path in live_log_paths(key))


def test_logs_whose_upload_was_refused_stay_live_and_the_worker_names_both_files(
    settings: Settings, write_chain: WriteChain, caplog: pytest.LogCaptureFixture
) -> None:
    def guard(what: str) -> None:  # the output commits; the logs' commit is refused
        if "/log/" in what:
            raise LeaseLost(f"refused: {what}")

    fence.install(guard)
    try:
        task = built(settings, write_chain, "quiet_chain", QUIET_CHAIN, "QuietTask")
    finally:
        fence.install(None)

    stdout, stderr = live_log_paths(task.target_key)
    assert stdout.is_file() and stderr.is_file()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("could not save the logs")]
    assert said == [f"could not save the logs of {task.target_key.folder}; they stay in {stdout} and {stderr}"], said


def test_a_steps_log_appends_whatever_its_offset_whether_created_or_made_ahead(tmp_path: Path) -> None:
    """A step's log is written at its end by every writer, a subprocess's inherited descriptor too, wherever the
    descriptor's offset stands (``O_APPEND``); one created over an old file starts empty."""
    old = tmp_path / "created.log"
    old.write_text("an earlier step's lines\n")
    logs = [open_log(old)]
    ahead.make_ahead(tmp_path)
    if ahead._made is not None:  # a file system that makes anonymous files (see the test above)
        made = ahead.take(tmp_path / "ahead.log")
        assert made is not None
        logs.append(made)
    for log in logs:
        log.write("first\n")
        os.lseek(log.fileno(), 0, os.SEEK_SET)  # another writer of the same descriptor moved it back
        log.write("second\n")
        log.close()
        assert Path(log.name if isinstance(log.name, str) else tmp_path / "ahead.log").read_text() == "first\nsecond\n"
    ahead.discard()
