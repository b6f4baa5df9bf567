"""The WAL of a SQLite registry checkpointed by a thread of each process that writes, off the writers' turn.

SQLite's automatic checkpoint (every 1,000 WAL frames, about 100 new runs) ran inside the ``COMMIT`` that crossed
the mark, in the writer's turn, waiting on two ``fsync`` while every other writer waited for the turn. The
connections now checkpoint on their own only past :data:`BACKSTOP_FRAMES`; every :data:`CHECKPOINT_TURNS` write
turns of a process, its checkpointer copies the WAL into the file outside the turn (``PASSIVE``: it waits on no
one), then takes the turn to copy the frames written meanwhile. 20,000 new runs from 8 threads, 4 A/B pairs: turns
of 5 ms or more 177-201 -> 28-50, p99 of a writer's turn 10-14 -> 1.1-1.4 ms, the turn held 5.0-6.6 -> 4.4-5.4 s in
all (the checkpointer's share included), the largest WAL 4.2 -> 8-11 MB.

Why that second checkpoint, in the turn: SQLite writes the WAL again from its start only when a writer begins once
every frame is copied (and no reader is on the WAL). A checkpoint outside the turn never copies the frames written
while it runs, so under a steady stream of writes the WAL was never all copied and grew (92 MB for 3,000 runs from
8 threads). In the turn, nothing is added meanwhile, and the next writer starts the WAL over. A reader whose
snapshot is older holds back the frames after it: the WAL grows while it reads, and the first checkpoint after it
let go copies all.

``synchronous = NORMAL`` as before: a power loss may roll back what was written since the WAL's last fsync. Each
wake of the checkpointer fsyncs the whole WAL (every frame written so far): a copy's first step, or, while fewer
than :data:`COPY_FRAMES` frames are in the WAL, all it does (an ``fdatasync`` of the WAL file, which SQLite
reads back as it recovers; the copy, the file's own fsync and the in-turn copy wait for about every third wake). So
that is at most the frames of one interval of :data:`CHECKPOINT_TURNS` turns, or of those written while an outside
copy ran, where SQLite's mark was 1,000 frames. The WAL itself holds more (up to :data:`COPY_FRAMES` and the frames
of a wake or two past it): its frames from before the in-turn copy are fsynced, copied, and written over once it
starts again. An fsync is what the kernel's own writeback may do at any moment: it makes a frame durable sooner,
never changes what SQLite finds as it recovers.

Several processes: each counts its own turns and checkpoints; SQLite lets one checkpoint run at once (another's
``PASSIVE`` one finds it busy and copies nothing). A process that ends its registry (:meth:`Checkpointer.close`, at
the latest as its interpreter exits) copies the turns it wrote since its last checkpoint. One that ends otherwise
(killed, or by ``os._exit``, as a spare's attempt does) before its :data:`CHECKPOINT_TURNS`-th turn counted its
turns for no one: the others look at the frames not yet copied, and past :data:`CHECKPOINT_FRAMES` the next to look
checkpoints them (the backstop only where no process writes on)."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from nectar.forks import SQLITE, lock_made_anew_in_children
from nectar.process_threads import process_thread

logger = logging.getLogger(__name__)

#: WAL frames past which a writer's COMMIT checkpoints all the same (``wal_autocheckpoint``; SQLite's own mark is
#: 1,000): a WAL no process checkpointed, written by processes that each wrote fewer than :data:`CHECKPOINT_TURNS`
#: turns and ended (while a checkpoint runs, a COMMIT's finds it busy and returns at once)
BACKSTOP_FRAMES = 10_000
#: write turns of one process between two checkpoints of its own (8-11 WAL frames each, a submission's or a few
#: combined: about 1,000 frames, the mark of SQLite's automatic checkpoint, and as many fsynced at each)
CHECKPOINT_TURNS = 90
#: WAL frames not yet copied past which a process's turn wakes its checkpointer whoever wrote them: those of processes
#: that count their turns for no one (a spare's attempt writes a few, then ends with ``os._exit``), which a process's
#: own :data:`CHECKPOINT_TURNS` never see (3x SQLite's mark: the WAL of 8 threads that each process checkpoints as
#: it should holds 2,000-2,600)
CHECKPOINT_FRAMES = 3_000
#: a process's write turns between two looks at the frames not yet copied (a ``pread`` of the WAL index, ~1 µs)
LOOK_EVERY = 8
#: WAL frames (since it last started over: after a start over, the frames not yet copied) below which a wake of the
#: checkpointer fsyncs the WAL alone (every frame written so far, as a copy's first step does), and copies nothing:
#: about every third wake copies (the WAL then 2,500-3,500 frames, within the first 4,096 that one hash table of
#: SQLite's WAL index maps). A copy also writes each page changed since the last into the file, fsyncs the file, and
#: then, in the writers' turn, copies again what was written meanwhile (the hot pages again, two fsyncs more): 4,000
#: submissions in process, 6 pairs, the checkpointer's CPU per submission 16.7-22.3 -> 12.7-14.4 µs. A longer WAL costs
#: its writers a little more: SQLite's index of it hashes a page's frames to one chain, which a hot page's (the queue's
#: count, the newest leaves) lengthen (+3-6k instructions a submission, ~1%)
COPY_FRAMES = 2_500
#: the WAL index's header in ``<file>-shm`` (SQLite's file format, native byte order): its version at 0, the frames
#: in the WAL (``mxFrame``) at 16, the frames copied (``nBackfill``) at 96
WAL_INDEX = struct.Struct("=I12xI76xI")
WAL_INDEX_VERSION = 3007000


#: descriptors of WAL indexes that a checkpointer done with them could not close: the process held a lock on the file
#: (a close releases every POSIX lock of its process on the file, SQLite's too). The next checkpointer of the file
#: takes its own from here (:func:`kept_or_opened`), and each release closes those no lock is on any longer
#: (:func:`release`): the process keeps no more of them than files a connection of its own or of another process is
#: on. A fork's copies are closed as the fork returns in the child (:func:`_forget_in_child`)
_KEPT: list[int] = []


def _forget_in_child() -> None:
    """In a child as its fork returns: close its copies of the parent's kept descriptors, and keep none. A spare kept
    them for its life (one per kept WAL index), as the parent's to close. Closed then, they drop no lock: POSIX locks
    are not inherited, so the child holds none yet on any file (the parent's SQLite connections it copied hold
    theirs in the parent alone, and a close in the child releases only the child's), and it has run nothing that
    could take one, nor opened another file under a kept number (a child that closed what it inherited and opened
    others, as a process set up anew may, had a later release close that file's descriptor). A number the parent
    closed as the fork was made is not listed (a release takes it out of the list before it closes it)."""
    for fd in _KEPT:
        try:
            os.close(fd)
        except OSError:
            pass
    _KEPT.clear()


os.register_at_fork(after_in_child=_forget_in_child)
#: held while a descriptor is kept, taken or closed (a fork's own: a parent's thread may hold it)
_KEEPING = lock_made_anew_in_children(globals(), "_KEEPING")


#: ``struct flock`` as Linux's ``fcntl`` takes it on a 64-bit platform: ``l_type``, ``l_whence``, ``l_start``,
#: ``l_len``, ``l_pid`` (and its padding)
FLOCK = struct.Struct("@hhqqi4x")


def locked(fd: int) -> bool:
    """Whether a POSIX lock of any process, this one's included, is on the file of ``fd``: the kernel asked about the
    file itself (``F_OFD_GETLK``: a lock of an open file description conflicts with every process's traditional lock,
    the asking process's own too, where ``F_GETLK`` never reports the caller's). Any process's, not this one's alone:
    the kernel reports one lock that conflicts, not all. Until round 54 this read the process's own locks from
    ``/proc/locks``, which the kernel writes a page per read while other processes lock and unlock: a line is
    skipped as one before it goes between two reads (17 reads of 1,379 missed a lock held all along as two other
    processes took and dropped 300 locks each), and a lock of this process missed there had its kept descriptor
    closed, which dropped SQLite's locks on the WAL index (CI's one failure of round 53). Raises OSError where the
    kernel cannot say (before Linux 3.15)."""
    asked = FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    return bool(FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, asked))[0] != fcntl.F_UNLCK)


def opening() -> AbstractContextManager[bool]:
    """Held by every opening of a registry connection in this process until its first statement has run (SQLite's
    first lock on the WAL index, which the process's connections then hold while one is on the file), and by
    :func:`release` from its look at a file's locks to its close of the descriptor no lock is on: a connection
    opened between the two would have its lock dropped by that close (a close releases every lock of the process on
    the file). Not the fork gate, which the writer that releases may hold (two of them would wait on each other)."""
    return _KEEPING


def kept_or_opened(path: str) -> int:
    """A descriptor of the WAL index at ``path``: the one kept for the file (:func:`release`), else one opened."""
    with _KEEPING:
        if _KEPT:
            file = os.stat(path)
            for kept in _KEPT:
                if os.path.samestat(os.fstat(kept), file):
                    _KEPT.remove(kept)
                    return kept
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def release(fd: int | None = None) -> None:
    """Be done with ``fd`` (if any), a descriptor of a WAL index: closed, unless a lock is on its file (SQLite's
    connections of the process on it: the one that tells another process opening the file that the index is in use,
    the readers' marks; or another process's, :func:`locked`); then kept, for the next checkpointer of the file or a
    later release. Those kept before are closed once no lock is on their file (each asked, then closed, while no
    connection of the process is being opened, :func:`opening`: one of another thread that took its first lock on
    the file's index in between would have lost it, and another process opening the file would have found the index
    in use by none). A file another process keeps a lock on keeps this process's descriptor of it until a release
    finds none: one a file, which the next checkpointer of the file here takes (:func:`kept_or_opened`)."""
    with _KEEPING:
        if fd is not None:
            _KEPT.append(fd)
        for kept in list(_KEPT):
            try:
                if locked(kept):
                    continue
            except OSError:  # whether a lock is on the file is not known: kept
                continue
            _KEPT.remove(kept)
            os.close(kept)


def uncopied(shm: int) -> int | None:
    """The WAL's frames not yet copied into the file, read from its index (``shm``: a descriptor of ``<file>-shm``):
    a look without a lock (a header being rewritten may read wrong; the next look reads it again); None, unknown,
    where the index is not of the version known (not 0: nothing says all is copied); 0 where its header is not
    written yet: the file shorter than it, or its version 0 (SQLite makes the file, maps it, 32 KiB of zeros, then
    writes the header as it recovers the WAL: no frame is counted in it yet)."""
    counted = in_wal(shm)
    if counted is None:
        head = os.pread(shm, WAL_INDEX.size, 0)
        return 0 if len(head) < WAL_INDEX.size or WAL_INDEX.unpack(head)[0] == 0 else None
    return max(0, counted[0] - counted[1])


def in_wal(shm: int) -> tuple[int, int] | None:
    """The WAL's frames and those of them copied into the file, read from its index as :func:`uncopied` does; None
    where the index is not there or not of the version known."""
    data = os.pread(shm, WAL_INDEX.size, 0)
    if len(data) < WAL_INDEX.size:
        return None
    version, frames, copied = WAL_INDEX.unpack(data)
    if version != WAL_INDEX_VERSION:
        return None
    return frames, copied


@functools.cache
def unknown_index(shm: str) -> None:
    """Say once a process, at WARNING, that the WAL index at ``shm`` cannot be read (:func:`uncopied`)."""
    logger.warning(
        "the WAL index %s is of no version known (%d expected, SQLite %s): its frames are not counted, and the "
        "checkpointer copies the WAL every %d write turns",
        shm,
        WAL_INDEX_VERSION,
        sqlite3.sqlite_version,
        LOOK_EVERY,
    )


class Checkpointer:
    """One process's thread that checkpoints one file, woken by :meth:`wrote` (started by its first wake)."""

    def __init__(
        self, open_: Callable[[], sqlite3.Connection], turn: Callable[[], AbstractContextManager[None]], shm: str
    ) -> None:
        self._open, self._turn, self._shm_path = open_, turn, shm
        #: a descriptor of the WAL index (opened at the first look), and the turns since the last look
        self._shm: int | None = None
        self._looks = 0
        #: the frames not yet copied that the last look to wake the thread found
        self._behind_by = 0
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._turns = 0
        self._thread: threading.Thread | None = None
        #: a descriptor of the WAL (opened at the first sync alone), which a sync alone fsyncs
        self._wal: int | None = None
        #: checkpoints made (each a sync of the WAL alone, or one or two ``PRAGMA wal_checkpoint``), and of those, how
        #: many synced the WAL alone, and how many copied every frame
        self.made = 0
        self.synced = 0
        self.complete = 0
        #: of those, how many took the writers' turn to copy what was committed while the first copy ran
        self.took_turn = 0
        self._asked = False
        #: a wake asked is being made (taken by the thread, not yet counted in :attr:`made`)
        self._making = False
        #: set by :meth:`close`: the thread copies what is left, closes its connection and ends
        self._closing = False

    def wrote(self) -> None:
        """A write turn of this process ended (its caller no longer holds it): every :data:`CHECKPOINT_TURNS`-th
        wakes the thread, and so does one that finds :data:`CHECKPOINT_FRAMES` frames not yet copied (a look every
        :data:`LOOK_EVERY` turns)."""
        if threading.current_thread() is self._thread:  # its own turn (the checkpoint's end) is no writer's
            return
        with self._lock:
            self._turns += 1
            self._looks = (self._looks + 1) % LOOK_EVERY
            if self._closing:
                return
            if self._turns < CHECKPOINT_TURNS and (self._looks or not self._behind()):
                return
            self._turns = 0
            self._asked = True
            self._wake()

    def gives_up_turn(self) -> bool:
        """Whether the caller, waiting for a writers' turn, gives up waiting: it is this checkpointer's thread and
        :meth:`close` was called (its in-turn copy is not made: the close, an exit's, waits on no other process's
        writer, up to :data:`~nectar.registry.sqlite.BUSY_TIMEOUT`)."""
        return self._closing and threading.current_thread() is self._thread

    def _wake(self) -> None:
        """Wake the thread (started by its first wake), the caller holding ``_lock``."""
        if self._thread is None:
            # a spare's run may start it: the process still takes another, its checkpointer waiting for the next turns
            thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread = process_thread(thread, self._shm_path.removesuffix("-shm"))
            self._thread.start()
        self._wanted.notify()

    def _behind(self) -> bool:
        """Whether :data:`CHECKPOINT_FRAMES` frames more than the last look that woke the thread found are not yet
        copied (:func:`uncopied`; the WAL index opened at the first look): a reader's snapshot that holds frames back
        wakes it once per :data:`CHECKPOINT_FRAMES` frames written, not at every look."""
        try:
            frames = uncopied(self._index())
        except OSError:
            return False
        if frames is None:  # an index of a version not known (a SQLite newer than the format read): frames uncounted
            unknown_index(self._shm_path)
            return True  # a wake at each look (a copy every LOOK_EVERY turns, not every CHECKPOINT_TURNS), not none
        if frames < self._behind_by:  # copied since
            self._behind_by = 0
        if frames < self._behind_by + CHECKPOINT_FRAMES:
            return False
        self._behind_by = frames
        return True

    def _index(self) -> int:
        """A descriptor of the WAL index ``<file>-shm`` as it is now: the one held, unless its file was removed (the
        file's last connection removes it as it closes, and the next to open the file makes another: the one held
        would be read stale for good), then the file there now (:func:`kept_or_opened`). Its check is one ``fstat`` a
        look. The one removed is released (:func:`release`): no SQLite connection of any process was on it as it was
        removed (SQLite removes it only once it is its last), and one of this process opened since opens the new file,
        so the lock that keeps it is none."""
        if self._shm is not None and os.fstat(self._shm).st_nlink == 0:
            release(self._shm)
            self._shm = None
        if self._shm is None:
            self._shm = kept_or_opened(self._shm_path)
        return self._shm

    def close(self) -> None:
        """Copy the turns written since the last checkpoint (if any), then end the thread and close its connection;
        what the thread was doing ends first. Later turns are counted by no one (the backstop's). The WAL index's
        descriptor is released last (:func:`release`: closed unless a lock is on the file): a close
        releases every POSIX lock of the process on the file, SQLite's among them (the one that tells another process
        opening the file that the index is in use, and the readers' marks), so the last checkpoint, and the
        connections of the process that outlive it, keep them in place."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._asked = self._asked or self._turns > 0
            self._turns = 0
            thread = None
            if self._thread is not None or self._asked:
                self._wake()
                thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            shm, self._shm = self._shm, None
        release(shm)

    def wait_made(self, count: int, timeout: float) -> bool:
        """True once ``count`` checkpoints were made (for tests and benchmarks), False after ``timeout`` s."""
        with self._lock:
            return self._wanted.wait_for(lambda: self.made >= count, timeout)

    def wait_quiet(self, timeout: float) -> bool:
        """True once every wake asked so far is made (none asked, none being made), for a benchmark that counts the
        CPU of the turns it wrote with the checkpoints they asked; False after ``timeout`` s."""
        with self._lock:
            return self._wanted.wait_for(lambda: not (self._asked or self._making), timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        closing = False
        while not closing:
            with self._lock:
                self._wanted.wait_for(lambda: self._asked or self._closing)
                asked, closing, self._asked = self._asked, self._closing, False
                self._making = asked
            synced = asked and not closing and self._synced_alone()
            with SQLITE.inside():  # no fork copies SQLite's state mid-use (nectar.forks)
                complete = False
                try:
                    if asked and not synced:
                        conn = conn or self._open()
                        complete = self._checkpoint(conn, last=closing)
                except sqlite3.Error:  # the file is checkpointed by the next one (or by the last connection to close)
                    complete = False
                if closing and conn is not None:
                    conn.close()
            if asked:
                with self._lock:
                    self.made += 1
                    self.synced += synced
                    self.complete += complete
                    self._making = False
                    self._wanted.notify_all()
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    def _synced_alone(self) -> bool:
        """Whether the WAL was fsynced, nothing copied: so while it holds fewer than :data:`COPY_FRAMES` frames
        (:func:`in_wal`, the WAL index looked at as a turn looks); False, and the caller copies, where they cannot be
        counted or the WAL cannot be synced. Its frames, not those not yet copied: a WAL all copied that the next
        writer did not start over (another connection's read mark held on it as that writer began) grows from where
        it was until the next complete copy, which gives the writer after it its next chance; counted by the frames
        not yet copied, that copy waited for :data:`COPY_FRAMES` more frames at each miss (a WAL of 98.5 MB in
        ``--only submit --quick``, 28.8-46.2 MB before the wakes that copy nothing). The WAL's descriptor is opened
        at the first sync, and again
        once its file was removed (the file's last connection removes it as it closes, and the next to open the file
        makes another). SQLite locks nothing of the WAL file: no lock of the process is dropped as it is closed."""
        with self._lock:
            try:
                counted = in_wal(self._index())
            except OSError:
                return False
        if counted is None or counted[0] >= COPY_FRAMES:
            return False
        try:
            if self._wal is not None and os.fstat(self._wal).st_nlink == 0:
                os.close(self._wal)
                self._wal = None
            if self._wal is None:
                self._wal = os.open(self._shm_path.removesuffix("-shm") + "-wal", os.O_RDONLY | os.O_CLOEXEC)
            os.fdatasync(self._wal)
        except OSError:
            return False
        return True

    def _checkpoint(self, conn: sqlite3.Connection, last: bool = False) -> bool:
        """Copy the WAL out of the turn, then the rest in it (the ``last``, as the process ends its registry: out of
        the turn only, so that it waits on no writer, its own turns all committed); True when every frame was
        copied."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy or last:  # another process's checkpoint runs, or the WAL need not start over
            return not busy and copied >= frames
        # its count of frames was the WAL's as it began: a writer's transaction committed before it ended may have
        # added more (``data_version`` changed), and the WAL starts over only for a writer that begins once every
        # frame is copied; with none, every frame was copied
        if copied >= frames and conn.execute("PRAGMA data_version").fetchone()[0] == version:
            return True
        with self._turn():  # no frame is added meanwhile
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.took_turn += 1
        return not busy and copied >= frames
