"""A SQLite registry's WAL is checkpointed by a thread of the process that writes, never in a writer's COMMIT, and
starts over once a checkpoint copied every frame; what a process wrote since its last checkpoint is copied as it
closes the registry or exits, and the thread ends with its connection; the frames of processes that counted their
turns for no one are checkpointed by the next to look (nectar.registry.sqlite_checkpoints)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from harness import lifeline_env
from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.conftest import wait_until
from tests.helpers.forks import said_by_a_child_forked_while_held
from tests.helpers.registries import closed_at_end
from tests.helpers.suitenectarB_runs import GUARD, REPOSITORY, lock_holder_seen_by_another_process, new_run
from tests.helpers.threads import at_line

#: SQLite's own mark for its automatic checkpoint, in WAL frames (``wal_autocheckpoint``'s default)
AUTOCHECKPOINT = 1_000
#: bytes of a WAL frame (a 4 KiB page and its 24-byte header) and of the WAL's header
FRAME, HEADER = 4096 + 24, 32
#: the write turns a new registry's opening takes (its schema written, ``SQLiteRunStore._migrate``), counted toward
#: its first checkpoint as every turn is: a test that counted without it woke the checkpointer a turn before it
#: thought and wrote on, its write in flight as the checkpoint copied
OPENING_TURNS = 1


@pytest.fixture(autouse=True)
def every_wake_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wake of a checkpointer copies the WAL (none fsyncs it alone: COPY_FRAMES), unless a test says otherwise."""
    monkeypatch.setattr(sqlite_checkpoints, "COPY_FRAMES", 0)


def wal_frames(path: Path) -> int:
    """The frames in the WAL of the registry at ``path`` (a checkpoint's count of them, made by another connection:
    it copies what it may and counts the rest)."""
    with sqlite3.connect(path, isolation_level=None) as look:
        busy, frames, _ = look.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    look.close()
    assert not busy
    return int(frames)


def test_a_writers_commit_never_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 250)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(249 - OPENING_TURNS):  # ~8 frames each: ~2,000
        store.submit(new_run(n))
    wal = Path(f"{path}-wal").stat().st_size
    assert wal > HEADER + 1.5 * AUTOCHECKPOINT * FRAME, "a commit checkpointed (the WAL started over)"
    assert store.checkpoints.made == 0
    store.submit(new_run(249))  # the 250th turn wakes the checkpointer
    wal = Path(f"{path}-wal").stat().st_size
    assert store.checkpoints.wait_made(1, GUARD)
    assert store.checkpoints.complete == 1
    store.submit(new_run(250))  # the first writer after a complete checkpoint writes the WAL from its start
    assert wal_frames(path) < 50
    assert Path(f"{path}-wal").stat().st_size == wal  # written again from its start, never longer


def test_the_wal_grows_while_a_reader_holds_a_snapshot_and_starts_over_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each checkpoint is waited for after the turn that woke it, no write after it: once in six whole-suite runs
    under load the WAL did not start over (1,020 frames kept), as the registry's opening is a turn (its schema
    written) and each group's last run, written after the wake, was in flight as the checkpoint copied (its statement
    begun before, its snapshot on the WAL not all copied; committed after the checkpointer's last look): its frames
    went after those copied, and the next writer, the WAL not all copied, could not start it over."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 20)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    numbers = itertools.count()

    def twenty_turns() -> None:
        """The turns to the next checkpoint, the last one waking it (the registry's opening was the first's first)."""
        for _ in range(20 - (OPENING_TURNS if store.checkpoints.made == 0 else 0)):
            store.submit(new_run(next(numbers)))

    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # its snapshot, held
        for made in range(1, 6):  # 5 checkpoints
            twenty_turns()
            assert store.checkpoints.wait_made(made, GUARD)
        assert store.checkpoints.complete == 0  # nothing after the reader's snapshot was copied
        held = wal_frames(path)
        assert held > 400  # the 100 runs' frames, all kept
        reader.execute("COMMIT")  # lets go
    finally:
        reader.close()
    twenty_turns()
    assert store.checkpoints.wait_made(6, GUARD)
    assert store.checkpoints.complete == 1
    store.submit(new_run(next(numbers)))
    assert wal_frames(path) < 50  # started over


def wal_index(path: Path) -> tuple[int, int]:
    """The frames in the WAL of the registry at ``path`` and those copied, read from its index (no lock, no copy)."""
    with open(f"{path}-shm", "rb") as shm:
        _, frames, copied = sqlite_checkpoints.WAL_INDEX.unpack(shm.read(sqlite_checkpoints.WAL_INDEX.size))
    return frames, copied


def test_a_write_in_flight_as_a_checkpoint_copies_is_copied_by_the_next_and_the_wal_starts_over_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write begun on a WAL not all copied and committed after the checkpointer's last look (another thread's or
    process's) goes after the frames copied: the WAL does not start over at the next writer, but after the next
    checkpoint. Made certain: the checkpointer, woken, waits to open its connection until the next write is
    mid-statement (a gate in the writing connection's progress handler), which waits for that checkpoint."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 20)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    numbers = itertools.count()
    for _ in range(20 - OPENING_TURNS - 1):
        store.submit(new_run(next(numbers)))
    held, mid_statement, made = threading.Event(), threading.Event(), list[bool]()

    def holds_the_opening() -> None:
        with sqlite_checkpoints.opening():
            held.set()
            mid_statement.wait(GUARD)

    threading.Thread(target=holds_the_opening, daemon=True).start()
    assert held.wait(GUARD)
    store.submit(new_run(next(numbers)))  # the 20th turn wakes the checkpointer: it waits to open its connection
    written, _ = wal_index(path)

    def gate() -> int:
        if not made:
            mid_statement.set()
            made.append(store.checkpoints.wait_made(1, GUARD))
        return 0

    writing = store._writing()
    writing.set_progress_handler(gate, 1)
    try:
        store.submit(new_run(next(numbers)))
    finally:
        writing.set_progress_handler(None, 1)
    assert made == [True] and store.checkpoints.complete == 1  # every frame committed as it looked was copied
    frames, copied = wal_index(path)
    assert frames > copied == written  # the write in flight's frames after those copied, not copied
    store.submit(new_run(next(numbers)))
    assert wal_index(path)[0] > frames  # not started over: written after
    for _ in range(20 - 2):
        store.submit(new_run(next(numbers)))
    assert store.checkpoints.wait_made(2, GUARD)
    assert store.checkpoints.complete == 2
    store.submit(new_run(next(numbers)))
    assert wal_frames(path) < 50  # started over


def open_on(path: Path) -> int:
    """This process's descriptors open on the registry file at ``path`` or its WAL."""
    fds = Path("/proc/self/fd")
    names = {str(path), f"{path}-wal"}
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) in names)


def shm_descriptors(folder: Path) -> int:
    """This process's descriptors open on a WAL index (``-shm``) in ``folder``, removed ones included."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed since
            name = Path(os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)"))
            found += name.parent == folder and name.name.endswith("-shm")
    return found


def test_closing_the_registry_ends_its_checkpointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 5)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(7):
        store.submit(new_run(n))
    checkpoints = store.checkpoints
    assert checkpoints.wait_made(1, GUARD)
    thread = checkpoints._thread
    assert thread is not None and thread.is_alive()
    assert open_on(path) >= 2  # the connection that writes, the checkpointer's
    store.close()
    assert not thread.is_alive()
    assert open_on(path) == 0 and shm_descriptors(tmp_path) == 0  # the WAL index's too, no connection left on it
    assert checkpoints.made == 2  # the 2 turns after the first checkpoint, copied as it closed
    assert in_file_alone(path, tmp_path / "copy") == {f"ATask_{n}" for n in range(7)}
    store.submit(new_run(7))  # a later use opens them again
    assert store.checkpoints is not checkpoints
    store.close()


def in_file_alone(path: Path, folder: Path) -> set[str]:
    """The task ids of the runs in the registry file at ``path`` itself, without its WAL: those a checkpoint copied."""
    folder.mkdir(exist_ok=True)
    copy = folder / "alone.sqlite3"
    for stale in folder.iterdir():
        stale.unlink()
    shutil.copyfile(path, copy)
    with closing(sqlite3.connect(copy)) as db:
        return {task_id for (task_id,) in db.execute("SELECT task_id FROM runs")}


#: a process that submits runs ``argv[2]`` ... ``argv[3] - 1`` to the registry at ``argv[1]``, then ends as a script
#: does (its interpreter's exit) or, given ``argv[4]``, as a spare's attempt does (``os._exit``: no atexit)
WRITER = (
    "import os, sys; from pathlib import Path; from nectar.registry.sqlite import SQLiteRunStore; "
    "from tests.helpers.suitenectarB_runs import new_run; store = SQLiteRunStore(Path(sys.argv[1])); "
    "[store.submit(new_run(n)) for n in range(int(sys.argv[2]), int(sys.argv[3]))]; "
    "len(sys.argv) > 4 and os._exit(0)"
)


def write_in_a_process(path: Path, runs: range, exit_at_once: bool = False) -> None:
    """``runs`` (their numbers) submitted by a process of their own (:data:`WRITER`), one turn each."""
    argv = [sys.executable, "-c", WRITER, str(path), str(runs.start), str(runs.stop), *(["_exit"] * exit_at_once)]
    subprocess.run(argv, check=True, env={**os.environ, **lifeline_env()}, timeout=GUARD, cwd=REPOSITORY)


def test_a_short_lived_writers_turns_are_copied_as_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    closed_at_end(SQLiteRunStore(path))
    with closing(sqlite3.connect(path, isolation_level=None)) as held:  # the writer's connections are not the last
        held.execute("SELECT count(*) FROM runs").fetchone()
        write_in_a_process(path, range(10))  # 10 turns, fewer than CHECKPOINT_TURNS: none made
        assert in_file_alone(path, tmp_path / "copy") == {f"ATask_{n}" for n in range(10)}


def test_frames_no_process_counted_are_checkpointed_by_the_next_writer_to_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_FRAMES", 200)
    path, children = tmp_path / "runs.sqlite3", range(1, 1 + 4 * 7)  # 28 runs, 8 or more WAL frames each
    store = closed_at_end(SQLiteRunStore(path))
    store.submit(new_run(0))  # this process's first turn
    with closing(sqlite3.connect(path, isolation_level=None)) as held:  # no writer's connection is the last
        held.execute("SELECT count(*) FROM runs").fetchone()
        for first in children[::7]:  # fewer turns than a look needs, each process
            write_in_a_process(path, range(first, first + 7), exit_at_once=True)
        assert not in_file_alone(path, tmp_path / "copy") & {f"ATask_{n}" for n in children}  # none copied yet
        assert store.checkpoints.made == 0
        for n in range(100, 100 + sqlite_checkpoints.LOOK_EVERY):  # one of these turns of this process looks
            store.submit(new_run(n))
        assert store.checkpoints.wait_made(1, GUARD)
        assert in_file_alone(path, tmp_path / "copy") >= {f"ATask_{n}" for n in children}
    store.close()


def test_a_wake_with_few_frames_not_yet_copied_fsyncs_the_wal_and_copies_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer than COPY_FRAMES frames not yet copied: the wake fsyncs the WAL (what a power loss may roll back is
    bounded as when it copied: a copy's first step is that fsync) and copies nothing; a later wake past the mark
    copies every frame."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 5)
    monkeypatch.setattr(sqlite_checkpoints, "COPY_FRAMES", 100)  # 5 runs write fewer frames (8-11 each), 10 more
    path = tmp_path / "runs.sqlite3"
    synced: list[str] = []
    fdatasync = os.fdatasync  # SQLite's own fsyncs are its C library's, never this

    def observed(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", observed)
    store = closed_at_end(SQLiteRunStore(path))
    with closing(sqlite3.connect(path, isolation_level=None)) as held:  # no writer's connection is the last
        held.execute("SELECT count(*) FROM runs").fetchone()
        for n in range(5):  # the 5th turn wakes the checkpointer
            store.submit(new_run(n))
        checkpoints = store.checkpoints
        assert checkpoints.wait_made(1, GUARD)
        assert not in_file_alone(path, tmp_path / "copy") & {f"ATask_{n}" for n in range(5)}  # none copied
        assert (checkpoints.synced, checkpoints.complete, synced) == (1, 0, [f"{path}-wal"])
        made, numbers = 1, itertools.count(5)
        while checkpoints.complete == 0 and made < 5:  # past COPY_FRAMES within 4 wakes more (20 runs)
            for _ in range(5):
                store.submit(new_run(next(numbers)))
            made += 1
            assert checkpoints.wait_made(made, GUARD)
        assert checkpoints.complete == 1 and checkpoints.synced == made - 1
        assert in_file_alone(path, tmp_path / "copy") >= {f"ATask_{n}" for n in range(5)}
    store.close()


def test_a_checkpoint_with_nothing_committed_meanwhile_takes_no_turn(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    store.submit(new_run(0))
    checkpoints = store.checkpoints
    assert checkpoints.made == 0
    with store._writer():  # the writers' turn held here: nothing is committed while the checkpoint copies
        for _ in range(sqlite_checkpoints.CHECKPOINT_TURNS):  # as many turns as wake the thread
            checkpoints.wrote()
        assert checkpoints.wait_made(1, GUARD)  # made without the turn, every frame copied
        assert (checkpoints.complete, checkpoints.took_turn) == (1, 0)
    store.submit(new_run(1))
    assert wal_frames(path) < 50  # the WAL started over
    store.close()


def held_by_another_process(path: Path) -> bool:
    """Whether a process of its own finds the turn at writing the registry file at ``path`` taken."""
    probe = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)"
    )
    done = subprocess.run([sys.executable, "-c", probe, f"{path}-writer"], timeout=GUARD, check=False)
    assert done.returncode in (0, 3), done
    return done.returncode == 3


def state_of(thread: threading.Thread) -> str:
    """The kernel's state of ``thread`` of this process (``S``: asleep, waiting)."""
    return Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_closing_the_registry_while_a_thread_is_in_its_turn_keeps_the_turn_until_it_ends(tmp_path: Path) -> None:
    """Closing the turn's descriptor would drop the kernel's lock of a thread in its turn (another process could
    write meanwhile), and its end would unlock a closed descriptor: the close waits for the turn's end."""
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    store.submit(new_run(0))
    writers = store._writer()
    inside, leave, failed = threading.Event(), threading.Event(), []

    def in_a_turn() -> None:
        try:
            with writers:
                inside.set()
                leave.wait(GUARD)
        except BaseException as exc:
            failed.append(exc)

    writer, closer = threading.Thread(target=in_a_turn), threading.Thread(target=store.close)
    writer.start()
    assert inside.wait(GUARD)
    closer.start()
    checkpoints = writers.checkpoints
    # the close done, or past the checkpointer's end and asleep: waiting for the turn
    wait_until(
        lambda: (
            not closer.is_alive()
            or (checkpoints._thread is None or not checkpoints._thread.is_alive())
            and state_of(closer) == "S"
        )
    )
    try:
        assert held_by_another_process(path)
    finally:
        leave.set()
        writer.join(GUARD)
        closer.join(GUARD)
    assert not failed, failed
    assert not held_by_another_process(path)
    with pytest.raises(sqlite3.ProgrammingError):  # a turn of the closed registry's found before it closed
        with writers:
            pass
    store.submit(new_run(1))  # a later use opens them again
    store.close()


def test_closing_the_registry_waits_on_no_other_processs_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpointer's thread waiting for the writers' turn (its in-turn copy) while another process holds it:
    the close (an exit's) gives that copy up rather than wait for the turn, up to BUSY_TIMEOUT."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_TURNS", 10_000)  # no turn wakes the thread: the test does
    monkeypatch.setattr("nectar.registry.sqlite.BUSY_TIMEOUT", 1000.0)
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    store.submit(new_run(0))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM runs").fetchall()  # a snapshot: the frames after it are not copied
    for n in range(1, 4):
        store.submit(new_run(n))
    hold = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX); print('held')"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "; sys.stdout.flush(); sys.stdin.read()", f"{path}-writer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    closer = threading.Thread(target=store.close)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        checkpoints = store.checkpoints
        with checkpoints._lock:  # as a turn would: a checkpoint, which finds frames it cannot copy out of the turn
            checkpoints._asked = True
            checkpoints._wake()
        wait_until(lambda: not checkpoints._asked)  # taken: the thread is on its way to the turn
        closer.start()
        wait_until(lambda: not closer.is_alive())
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(GUARD)
        reader.close()
    assert checkpoints._thread is not None and not checkpoints._thread.is_alive()


def open_wal(path: Path) -> sqlite3.Connection:
    """A connection of its own on the file at ``path``, in WAL mode, that never checkpoints as it commits."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def write_pages(conn: sqlite3.Connection, pages: int) -> None:
    """``pages`` rows of a page each committed by ``conn`` in one transaction: about as many WAL frames."""
    conn.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", ((b"x" * 4000,) for _ in range(pages)))
    conn.execute("COMMIT")


def test_a_wal_index_removed_and_made_again_is_looked_at_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's last connection removes its WAL index (``-shm``) as it closes, and the next to open the file makes
    another: a process that looked at the first (its checkpointer kept) looks at the new one, not the removed one,
    and wakes its checkpointer for the frames written since."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_FRAMES", 200)
    path = tmp_path / "runs.sqlite3"
    shm = Path(f"{path}-shm")

    checkpoints = sqlite_checkpoints.Checkpointer(lambda: open_wal(path), contextlib.nullcontext, str(shm))
    with closing(open_wal(path)) as first:
        write_pages(first, 10)
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # a look: the WAL index opened, too few frames to wake
            checkpoints.wrote()
        assert checkpoints._shm is not None and checkpoints.made == 0
        removed = os.fstat(checkpoints._shm).st_ino
    assert not shm.exists()  # removed by the last connection
    with closing(open_wal(path)) as second:
        write_pages(second, 300)  # 300 frames not copied, in a WAL index made anew
        assert shm.stat().st_ino != removed
        # the descriptor of the removed index released at the look closes: no lock of the process is on it (SQLite
        # removed it as its last connection closed; this one's are on the new file, which they keep)
        assert not sqlite_checkpoints.locked(checkpoints._shm) and locked_here(shm)
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # a look
            checkpoints.wrote()
        assert checkpoints.wait_made(1, GUARD)
        assert locked_here(shm) and shm_descriptors(tmp_path) == 2  # SQLite's and the checkpointer's, of the new one
        assert wal_frames(path) >= 300 and checkpoints.complete == 1
    checkpoints.close()


def a_wal_index(path: Path, version: int, frames: int = 0, copied: int = 0, size: int = 32768) -> int:
    """A descriptor of a WAL index written at ``path`` with the header ``version``, ``frames``, ``copied``: of
    ``size`` bytes (SQLite's are 32 KiB; a shorter one has its header not written yet)."""
    header = sqlite_checkpoints.WAL_INDEX.pack(version, frames, copied)
    path.write_bytes((header + bytes(max(0, size - len(header))))[:size])
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def test_the_frames_of_a_wal_index_of_a_version_not_known_are_unknown(tmp_path: Path) -> None:
    """Not 0, all copied (as ``uncopied`` read them before); 0 still for an index whose header is not written yet."""
    known = sqlite_checkpoints.WAL_INDEX_VERSION
    for version, size, frames in [(known, 32768, 500), (known + 1, 32768, None), (known, 8, 0)]:
        fd = a_wal_index(tmp_path / "index", version, frames=500, copied=0, size=size)
        try:
            assert sqlite_checkpoints.uncopied(fd) == frames, (version, size)
        finally:
            os.close(fd)


def test_a_wal_index_mapped_before_its_header_is_written_counts_no_frame(tmp_path: Path) -> None:
    """SQLite maps a new index (32 KiB of zeros) before it writes the header as it recovers the WAL: a look then
    reads version 0, a header not written yet, no frame counted; not an index of a version not known (None, a wake
    and a WARNING that SQLite is newer than this module: false, as it was for a look in that window before)."""
    fd = a_wal_index(tmp_path / "index", 0, frames=0, copied=0)
    try:
        assert sqlite_checkpoints.uncopied(fd) == 0
    finally:
        os.close(fd)


def test_a_wal_index_of_a_version_not_known_wakes_the_checkpointer_at_a_look(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A SQLite whose WAL index is of a version this module cannot read: a look wakes the checkpointer (and says why,
    at WARNING), as a WAL whose frames cannot be counted may hold any number of them. Before, the look read 0 frames
    not copied, all copied: only the turns' count (:data:`CHECKPOINT_TURNS`) woke it, frames written by processes
    that count no turns never did."""
    path = tmp_path / "runs.sqlite3"
    index = tmp_path / "newer.sqlite3-shm"  # beside the file's own, which SQLite writes
    os.close(a_wal_index(index, sqlite_checkpoints.WAL_INDEX_VERSION + 1, frames=5_000))
    checkpoints = sqlite_checkpoints.Checkpointer(lambda: open_wal(path), contextlib.nullcontext, str(index))
    with closing(open_wal(path)) as conn:
        write_pages(conn, 10)
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # a look, far fewer turns than CHECKPOINT_TURNS
            checkpoints.wrote()

        assert checkpoints.wait_made(1, GUARD), "not woken by the look"
    checkpoints.close()
    assert f"the WAL index {index} is of no version known" in caplog.text


def test_a_wal_removed_and_made_again_is_the_one_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's last connection removes its WAL as it closes, and the next to open the file makes another: a
    checkpointer that synced the first (its descriptor kept) syncs the new one, not the removed one."""
    monkeypatch.setattr(sqlite_checkpoints, "CHECKPOINT_FRAMES", 200)
    monkeypatch.setattr(sqlite_checkpoints, "COPY_FRAMES", 10_000)  # each wake syncs alone
    path = tmp_path / "runs.sqlite3"
    wal = Path(f"{path}-wal")
    synced: list[int] = []
    fdatasync = os.fdatasync  # SQLite's own fsyncs are its C library's, never this

    def observed(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", observed)

    checkpoints = sqlite_checkpoints.Checkpointer(lambda: open_wal(path), contextlib.nullcontext, f"{path}-shm")
    with closing(open_wal(path)) as first:
        write_pages(first, 300)
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # a look: 300 frames, a wake
            checkpoints.wrote()
        assert checkpoints.wait_made(1, GUARD) and checkpoints.synced == 1
        removed = wal.stat().st_ino
        assert synced == [removed]
    assert not wal.exists()  # removed by the last connection
    with closing(open_wal(path)) as second:
        write_pages(second, 600)  # 600 frames not copied (200 more than the last wake found), in a WAL made anew
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # a look
            checkpoints.wrote()
        assert checkpoints.wait_made(2, GUARD) and checkpoints.synced == 2
        assert synced == [removed, wal.stat().st_ino] and wal.stat().st_ino != removed
    checkpoints.close()


#: reads of ``/proc/locks`` a look at this process's locks makes before it says none is there
LOCKS_READS = 3


def locked_here(path: Path) -> bool:
    """Whether this process holds a POSIX lock on the file at ``path`` (``/proc/locks``, read up to
    :data:`LOCKS_READS` times: the kernel writes it a page per read, and a line is skipped as one before it goes
    between two reads, as other processes' locks come and go; never one shown that was not held as it read)."""
    found = path.stat()
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    for _ in range(LOCKS_READS):
        with open("/proc/locks") as locks:
            held = [line.split() for line in locks if "->" not in line]  # not the waiters' lines
        if any(fields[1] == "POSIX" and fields[4] == str(os.getpid()) and fields[5] == inode for fields in held):
            return True
    return False


def test_the_last_checkpoint_runs_with_the_processs_locks_on_the_wal_index_in_place(tmp_path: Path) -> None:
    """A close of a descriptor releases every POSIX lock its process holds on the file: the checkpointer's of the WAL
    index, closed before its last checkpoint, released SQLite's locks of the process's connections on it (the one
    that tells another process the index is in use, which it would otherwise make again from nothing) for that
    checkpoint and after. It is closed after that checkpoint."""
    path = tmp_path / "runs.sqlite3"
    shm = Path(f"{path}-shm")
    locked_at_checkpoint = []

    def open_() -> sqlite3.Connection:  # the checkpoint's connection, opened as it begins
        locked_at_checkpoint.append(locked_here(shm))
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    checkpoints = sqlite_checkpoints.Checkpointer(open_, contextlib.nullcontext, str(shm))
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (x)")
        assert locked_here(shm)  # SQLite's, of this connection
        for _ in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the index opened
            checkpoints.wrote()
        assert checkpoints._shm is not None and checkpoints.made == 0
        checkpoints.close()  # the last checkpoint: the turns written since none
        assert checkpoints.made == 1 and checkpoints._shm is None
        assert locked_at_checkpoint == [True]


def test_closing_the_registry_keeps_the_locks_of_a_connection_still_open_on_the_file(tmp_path: Path) -> None:
    """A close of any descriptor releases every POSIX lock of its process on the file: the checkpointer's of the WAL
    index, closed as the registry closed, released those of SQLite's connections of the process still open (here a
    reader in its transaction): another process opening the file found no one on the index, and made it again from
    nothing under the reader. The descriptor is kept while a lock of the process is on the file."""
    path = tmp_path / "runs.sqlite3"
    shm = Path(f"{path}-shm")
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the WAL index opened
        store.submit(new_run(n))
    assert store.checkpoints._shm is not None
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == sqlite_checkpoints.LOOK_EVERY
        assert locked_here(shm) and lock_holder_seen_by_another_process(shm) == str(os.getpid())
        kept = store.checkpoints._shm
        store.close()
        assert locked_here(shm)  # the reader's, SQLite's
        assert lock_holder_seen_by_another_process(shm) == str(os.getpid())
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == sqlite_checkpoints.LOOK_EVERY
        reader.execute("COMMIT")
        again = closed_at_end(SQLiteRunStore(path))  # the next checkpointer of the file takes the descriptor kept
        for n in range(sqlite_checkpoints.LOOK_EVERY, 2 * sqlite_checkpoints.LOOK_EVERY):
            again.submit(new_run(n))
        assert again.checkpoints._shm == kept
        again.close()
        assert locked_here(shm)  # the reader's still
    assert shm_descriptors(tmp_path) == 1  # kept: the reader's locks were on the file at the close
    sqlite_checkpoints.release()  # the next release (another registry's close) closes it
    assert shm_descriptors(tmp_path) == 0


def test_closing_the_registry_keeps_the_locks_of_a_read_another_of_its_threads_is_in(tmp_path: Path) -> None:
    """The same for a connection of the registry's own: one another thread borrowed, inside its read transaction as
    the registry closes (the close closes the connections held idle, not those a thread holds)."""
    path = tmp_path / "runs.sqlite3"
    shm = Path(f"{path}-shm")
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the WAL index opened
        store.submit(new_run(n))
    inside, closed, counted = threading.Event(), threading.Event(), []

    def read(db: sqlite3.Connection) -> None:
        db.execute("BEGIN")
        counted.append(db.execute("SELECT count(*) FROM runs").fetchone()[0])
        inside.set()
        assert closed.wait(GUARD)
        counted.append(db.execute("SELECT count(*) FROM runs").fetchone()[0])
        db.execute("COMMIT")

    reader = threading.Thread(target=store._read, args=(read,))
    reader.start()
    try:
        assert inside.wait(GUARD)
        store.close()
        assert locked_here(shm)  # the reading thread's connection's, SQLite's
        assert lock_holder_seen_by_another_process(shm) == str(os.getpid())
    finally:
        closed.set()
        reader.join(GUARD)
    assert not reader.is_alive() and counted == [sqlite_checkpoints.LOOK_EVERY] * 2
    store.close()  # the connection given back, idle: closed now, and the descriptor kept with it
    assert shm_descriptors(tmp_path) == 0


def test_a_kept_wal_index_descriptor_is_handed_on_and_closed_once_no_lock_is_left(tmp_path: Path) -> None:
    """A process that opens and closes many registries while connections of its own stay open on them keeps no more
    descriptors of their WAL indexes than the files its connections are still on: the next checkpointer of a file
    takes the one kept, and a close closes those of files no lock of the process is on any longer."""
    for round_ in range(3):
        for n in range(10):
            path = tmp_path / f"runs-{n}.sqlite3"
            store = closed_at_end(SQLiteRunStore(path))
            for m in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the WAL index opened (or taken)
                store.submit(new_run(round_ * 100 + m))
            with closing(sqlite3.connect(path, isolation_level=None)) as reader:
                reader.execute("SELECT count(*) FROM runs").fetchone()
                store.close()  # the reader's locks on the index: kept
                assert locked_here(Path(f"{path}-shm"))
            assert shm_descriptors(tmp_path) <= 2  # this one's, and the last one's until the next close
    assert shm_descriptors(tmp_path) <= 1


def said_by_a_child_forked_while_a_wal_index_descriptor_is_kept(path: Path, child: Callable[[int], bytes]) -> bytes:
    """What ``child`` (given the kept descriptor's number) says in a child forked while this process keeps a
    descriptor of the WAL index of the registry at ``path`` (a lock of its reader was on the file as the registry
    closed); the parent's lock checked to be still there, as another process sees it, after the child is gone."""
    shm = Path(f"{path}-shm")
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the WAL index opened
        store.submit(new_run(n))
    kept = store.checkpoints._shm
    assert kept is not None
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM runs").fetchone()
        store.close()  # the reader's locks on the index: kept
        assert kept in sqlite_checkpoints._KEPT
        said = said_by_a_child_forked_while_held(contextlib.nullcontext(), lambda: child(kept))
        assert locked_here(shm) and lock_holder_seen_by_another_process(shm) == str(os.getpid())
        reader.execute("COMMIT")
    return said


def test_a_child_forked_while_its_parent_keeps_a_wal_index_descriptor_leaves_it_alone(tmp_path: Path) -> None:
    """A descriptor of a WAL index the parent keeps (a lock of its was on the file as its registry closed) is the
    parent's to close: a child forked then keeps none. Here the child has another file under the kept descriptor's
    number (a process set up anew may close what it inherited and open others): a release in the child leaves it
    open, where it closed it (no lock of the child's on that file)."""
    other = tmp_path / "another-file"
    other.write_text("")

    def child(kept: int) -> bytes:
        fd = os.open(other, os.O_RDONLY)
        os.dup2(fd, kept)
        os.close(fd)
        sqlite_checkpoints.release()
        try:
            return b"open" if os.path.samestat(os.fstat(kept), other.stat()) else b"another"
        except OSError as error:
            return f"closed: {error}".encode()

    assert said_by_a_child_forked_while_a_wal_index_descriptor_is_kept(tmp_path / "runs.sqlite3", child) == b"open"


def test_a_child_forked_while_its_parent_keeps_a_wal_index_descriptor_closes_its_copy_and_no_lock_is_lost(
    tmp_path: Path,
) -> None:
    """A child (a spare) kept its copy of each descriptor its parent kept, for its whole life: closed as the fork
    returns in the child, which drops no lock of the parent's (another process still sees the parent holding the
    WAL index once the child closed it)."""
    path = tmp_path / "runs.sqlite3"

    def child(kept: int) -> bytes:
        try:
            return b"open" if os.path.samestat(os.fstat(kept), os.stat(f"{path}-shm")) else b"another"
        except OSError:
            return b"closed"

    assert said_by_a_child_forked_while_a_wal_index_descriptor_is_kept(path, child) == b"closed"


#: a process that opens the registry at ``argv[1]``, writes a look's turns, closes it while a reader of its own is in
#: its transaction, and prints who another process sees holding a lock on the WAL index then (None: no one)
CLOSES_UNDER_A_READER = """
import sqlite3, sys
from contextlib import closing
from pathlib import Path
from nectar.registry import sqlite_checkpoints
from nectar.registry.sqlite import SQLiteRunStore
from tests.helpers.suitenectarB_runs import lock_holder_seen_by_another_process, new_run
path = Path(sys.argv[1])
store = SQLiteRunStore(path)
for n in range(sqlite_checkpoints.LOOK_EVERY):
    store.submit(new_run(n))
with closing(sqlite3.connect(path, isolation_level=None)) as reader:
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM runs").fetchone()
    store.close()
    print(lock_holder_seen_by_another_process(Path(f"{path}-shm")))
    reader.execute("COMMIT")
"""


def test_a_process_in_a_pid_namespace_of_its_own_keeps_its_locks_through_the_registrys_close(tmp_path: Path) -> None:
    """``/proc/locks`` names a lock's process by its pid in the namespace of that ``/proc``, which is not the
    process's own where it runs in a pid namespace /proc was not mounted for (``unshare --pid`` alone, a sandbox):
    there the process found none of its locks, and closed the WAL index's descriptor under its reader, releasing
    SQLite's locks of it (on main: another process then saw no one on the index, ``None``)."""
    path = tmp_path / "runs.sqlite3"
    argv = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", CLOSES_UNDER_A_READER, str(path)]
    env = {**os.environ, **lifeline_env()}
    seen = subprocess.run(argv, check=True, env=env, capture_output=True, text=True, timeout=GUARD, cwd=REPOSITORY)
    assert seen.stdout.strip() not in ("", "None"), seen


#: a process that holds a read lock on a byte of the SHARED range of the registry at ``argv[1]`` (SQLite's lock of a
#: reader of the file, not of its WAL index) until its stdin closes: the process's last connection cannot lock the
#: file EXCLUSIVE as it closes, so leaves the WAL index there, where no lock is then on it
HOLDS_THE_FILE = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0x40000002); "
    "print('open', flush=True); sys.stdin.read()"
)


def test_a_connection_opened_while_a_release_looks_at_the_locks_keeps_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release asks whether a lock is on a kept descriptor's file, then closes the descriptor if none is: a
    connection another thread opened in between had its first lock on the file's index dropped by that close (another
    process opening the file then finds the index in use by none). An opening waits for the release to be done."""
    path = tmp_path / "runs.sqlite3"
    shm = Path(f"{path}-shm")
    runs = closed_at_end(SQLiteRunStore(path))
    argv = [sys.executable, "-c", HOLDS_THE_FILE, str(path)]
    other = subprocess.Popen(argv, env={**os.environ, **lifeline_env()}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert other.stdin is not None and other.stdout is not None
    opened: list[sqlite3.Connection] = []
    try:
        assert other.stdout.readline() == b"open\n"
        with closing(runs._open()):
            sqlite_checkpoints.release(os.open(shm, os.O_RDONLY | os.O_CLOEXEC))  # kept: a lock of ours is on it
        assert shm.exists() and not locked_here(shm)  # left there by the last connection, no lock on it
        looked = sqlite_checkpoints.locked
        opener = threading.Thread(target=lambda: opened.append(runs._open()))

        def a_connection_opened_meanwhile(fd: int) -> bool:
            found = looked(fd)
            opener.start()
            waits = ("_open", "with opening():  # its first lock on the WAL index not dropped by a release's close")
            wait_until(
                lambda: opened or at_line(opener)[:1] == waits[:1] and at_line(opener)[1].startswith(waits[1][:15]),
                GUARD,
            )
            return found

        monkeypatch.setattr(sqlite_checkpoints, "locked", a_connection_opened_meanwhile)
        sqlite_checkpoints.release()
        monkeypatch.undo()
        opener.join(GUARD)

        assert opened, "the connection was not opened"
        assert locked_here(shm), "the lock of the connection opened during the release was dropped"
    finally:
        for conn in opened:
            conn.close()
        other.stdin.close()
        other.wait(GUARD)
        runs.close()


#: a process that takes 300 locks on bytes of the file at ``argv[1]`` and drops them, over and over, until its stdin
#: closes: a machine's other users of locks (other registries' connections) whose locks come and go
CHURNS_LOCKS = """
import fcntl, os, sys, threading
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("churning", flush=True)
while not done.is_set():
    for kind in (fcntl.LOCK_SH, fcntl.LOCK_UN):
        for byte in range(0, 600, 2):
            fcntl.lockf(fd, kind, 1, byte)
"""
#: releases made while another process's locks come and go: ~1 in 80 reads of ``/proc/locks`` missed a lock held all
#: along as two processes churned 300 each; a count, not a time
RELEASES = 2_000


def test_a_kept_wal_index_descriptor_stays_while_other_processes_take_and_drop_locks(tmp_path: Path) -> None:
    """A descriptor of a WAL index is kept while a lock of the process is on its file (here a reader's), however many
    times a release looks, while another process takes and drops hundreds of locks: the look asks the kernel about
    the file. It read the process's locks in ``/proc/locks``, which the kernel writes a page per read: a line is
    skipped there as one before it goes between two reads, and a release that missed the reader's lock closed the
    descriptor, dropping SQLite's locks of the process on the index (another process opening the file then found it
    in use by none: CI's failure of round 53, in the full suite, beside another worker's tests)."""
    path = tmp_path / "runs.sqlite3"
    store = closed_at_end(SQLiteRunStore(path))
    for n in range(sqlite_checkpoints.LOOK_EVERY):  # turns, and a look: the WAL index opened
        store.submit(new_run(n))
    kept = store.checkpoints._shm
    assert kept is not None
    argv = [sys.executable, "-c", CHURNS_LOCKS, str(tmp_path / "churned")]
    churn = subprocess.Popen(argv, env={**os.environ, **lifeline_env()}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert churn.stdin is not None and churn.stdout is not None
    try:
        assert churn.stdout.readline() == b"churning\n"
        with closing(sqlite3.connect(path, isolation_level=None)) as reader:
            reader.execute("SELECT count(*) FROM runs").fetchone()
            store.close()  # the reader's locks on the index: kept
            for looked in range(RELEASES):
                sqlite_checkpoints.release()
                assert kept in sqlite_checkpoints._KEPT, f"closed at release {looked + 1}, the reader's lock on it"
            assert lock_holder_seen_by_another_process(Path(f"{path}-shm")) == str(os.getpid())
    finally:
        churn.stdin.close()
        churn.wait(GUARD)
