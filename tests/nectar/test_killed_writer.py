"""What a writer killed between the open and the rename of its output leaves in its step's folder (the temporary file
of luigi's atomic write, ``out.txt-luigi-tmp-<n>``) is removed as the step starts again in the run's next attempt,
which owns the run (the killed one is dead or fenced off): nothing is left once the run is DONE."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness import send
from nectar.config import Settings
from nectar.registry import RunState
from nectar.stores.local import FencedLocalTarget, remove_temporaries, staged_beside
from tests.conftest import wait_until
from tests.nectar.test_killed_attempt import retried_run

#: a step that opens its output, writes part of it, says so with its attempt's pid, and waits for a flag before it
#: writes the rest and commits; the test kills its first attempt while it waits
HALF_WRITING_CHAIN = """
import os
from pathlib import Path
import time

import luigi

from nectar import NectarTask


class HalfWriteTask(NectarTask):
    flag = luigi.Parameter()

    def run(self):
        with self.output().open("w") as out:
            out.write("half")
            out.flush()
            Path(self.flag + ".part").write_text(str(os.getpid()))
            os.replace(self.flag + ".part", self.flag + ".pid")
            while not Path(self.flag).exists():
                time.sleep(0.05)
            out.write(" and the rest\\n")
"""


def test_a_killed_writers_temporary_file_is_removed_at_its_steps_next_attempt(
    settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    write_chain("writes/half_chain", HALF_WRITING_CHAIN)
    flag = tmp_path / "flag"
    _, _, current = retried_run(settings, start_worker, ("writes", "half_chain", "HalfWriteTask"), {"flag": str(flag)})
    pid_file = Path(f"{flag}.pid")
    wait_until(lambda: pid_file.exists(), timeout=60)
    folder = next((settings.local_targets_dir / "chains" / "writes").rglob("params.txt")).parent
    (left,) = [path for path in folder.iterdir() if "-luigi-tmp-" in path.name]  # out.txt's, half written
    assert left.read_bytes() == b"half"
    send(int(pid_file.read_text()), signal.SIGKILL)  # the attempt's process, mid-write
    wait_until(lambda: current().attempt == 2 and current().state == RunState.RUNNING, timeout=60)
    flag.touch()  # attempt 2 may finish
    wait_until(lambda: not current().state.active, timeout=60)
    assert (current().state, current().attempt) == (RunState.DONE, 2)
    assert (folder / "out.txt").read_text() == "half and the rest\n"
    assert not left.exists()
    assert not [path.name for path in folder.rglob("*") if "-luigi-tmp-" in path.name]
    said = "".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert f"removed 1 file(s) a killed writer left in {folder.relative_to(settings.local_targets_dir)}" in said


def test_a_temporary_file_a_live_writer_holds_is_kept(tmp_path: Path) -> None:
    """A live writer's temporary file (a writer frozen past its lease, or another run's attempt of the same step where
    no luigid grants it to one worker at a time) is not removed as a killed writer's: the writer commits it whole.
    Before, every file so named was removed, and the live writer's commit failed (its temporary file gone)."""
    out = tmp_path / "step" / "out.txt"
    writer = FencedLocalTarget(str(out)).open("w")
    writer.write("half")
    writer.flush()
    (held,) = [path.name for path in out.parent.iterdir()]

    assert remove_temporaries(str(out.parent)) == []

    writer.write(" and the rest\n")
    writer.close()
    assert out.read_text() == "half and the rest\n"
    assert [path.name for path in out.parent.iterdir()] == ["out.txt"], held


def test_only_temporary_files_of_writers_are_removed(tmp_path: Path) -> None:
    """Luigi's and the store's temporary names, files only; what merely looks alike (other digits, a folder, a link,
    a file below) is kept."""
    removed = ["out.txt-luigi-tmp-0123456789", ".stdout.log-luigi-tmp-9876543210.tmp"]
    kept = ["out.txt", "params.txt", "out.txt-luigi-tmp-123", "-luigi-tmp-0123456789x", ".out-luigi-tmp-0123456789"]
    for name in removed + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / "dir-luigi-tmp-0123456789").mkdir()
    (tmp_path / "dir-luigi-tmp-0123456789" / "in-luigi-tmp-0123456789").write_text("x")
    (tmp_path / "link-luigi-tmp-0123456789").symlink_to(tmp_path / "out.txt")
    assert sorted(remove_temporaries(str(tmp_path))) == sorted(str(tmp_path / name) for name in removed)
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {*kept, "dir-luigi-tmp-0123456789", "link-luigi-tmp-0123456789"}
    assert remove_temporaries(str(tmp_path / "missing")) == []


def test_what_a_killed_s3_writer_staged_is_removed_once_its_process_is_found_dead(
    s3_settings: Settings,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """luigi's atomic S3 file is written whole on the local disk, then uploaded on close: an attempt killed in between
    left its local file (``luigi-s3-<pid>-luigi-tmp-<n>`` in the temporary folder) for good. Its worker, which finds
    the process dead, removes what that process staged, before the pid can be another's; the retry writes its own."""
    write_chain("writes/half_chain", HALF_WRITING_CHAIN)
    flag = tmp_path / "flag"
    _, _, current = retried_run(
        s3_settings, start_worker, ("writes", "half_chain", "HalfWriteTask"), {"flag": str(flag)}
    )
    pid_file = Path(f"{flag}.pid")
    wait_until(lambda: pid_file.exists(), timeout=60)
    pid = int(pid_file.read_text())
    (staged,) = Path(staged_beside(pid)).parent.glob(f"luigi-s3-{pid}-luigi-tmp-*")
    assert staged.read_bytes() == b"half"
    send(pid, signal.SIGKILL)  # the attempt's process, mid-write
    wait_until(lambda: current().attempt == 2, timeout=60)
    wait_until(lambda: not staged.exists(), timeout=60)
    flag.touch()
    wait_until(lambda: not current().state.active, timeout=60)
    assert (current().state, current().attempt) == (RunState.DONE, 2)
    said = "".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert f"removed 1 file(s) the dead attempt process {pid} staged for S3: ['{staged}']" in said
