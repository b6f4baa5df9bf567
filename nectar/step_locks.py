"""A step's lock where no luigid hands it to one worker: runs that share a step make it one at a time.

With luigid, a step two runs need is granted to one worker at a time (the other waits for it, then finds it done:
:meth:`~nectar.luigi_internals.Worker._made_by_another`). luigi's local scheduler (``nectar run`` without
``--scheduler-url``, a worker without luigid) is each attempt's own: two such runs would run a shared step at once,
each writing its output. So a build with the local scheduler (:meth:`~nectar.build.Build.run`) runs each step of a
chain under a lock of the step's (:func:`held`): an exclusive ``flock`` of a file named for the step's folder, in
``<data dir>/step-locks``, taken before the step's ``run`` records anything; once it has it, a step another run made
meanwhile is not run again (:func:`made_meanwhile`, asked by the wrapper of every recorded step's ``run``).

The kernel releases a lock when its process dies (kill -9 too); a wait for one is interrupted as the attempt is
(its run cancelled or reclaimed: :class:`~nectar.errors.Interrupted` raised by the lease's signal). The lock's file
is removed by its holder as it ends, under the lock: a waiter that then holds a removed file's lock opens the name
again. It locks the steps of processes that share the data folder, so of one host: runs on several hosts that share
a step and no luigid are not kept apart.

A process forked while a lock is held (a step's ``os.fork`` or ``multiprocessing``) closes its copy of the lock's
descriptor as it starts (:func:`_forked`; a program it execs has none: close-on-exec): a child that outlived its step
would keep the lock of the removed file, and a run that waited on that file would wait for the child's end. Only the
process that took a lock lets it go (removes its file).

A step whose ``run`` is a generator (luigi's dynamic dependencies) holds its lock across its ``yield``: luigi leaves a
run whose yielded dependencies are undone and runs the step again, in the same process, from its start; the run it
left is closed (its lock let go) as luigi drops it (CPython frees a generator as its last reference goes), before the
step runs again (tests/nectar/test_step_locks.py).

``complete()`` is asked no more often than luigi's worker asks it (round 62): luigi's own ask (as its worker adds a
step) is made holding the step's lock, when no other process holds it (:func:`ask_held`), and leaves a token of its
own in the lock's file if the step is undone (:func:`ask_ended`, noted on the task). Every process that takes the lock
to make the step removes the file as it lets it go; so, when the step's run takes the lock, the file still holding
that token says no run made the step since luigi's ask, and it is not asked again (:func:`made_meanwhile`). A lock
held elsewhere at luigi's ask, another token, or a file made anew: asked again, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import luigi

from nectar.luigi_internals import around_complete_asks

logger = logging.getLogger(__name__)
#: the folder of the step locks of the builds of this process (and of the step processes it forks) that use luigi's
#: local scheduler; None: no lock (with luigid, or outside a build)
_folder: Path | None = None
#: the descriptors of the locks this process holds (:func:`held`), closed in a process forked since (:func:`_forked`)
_held: set[int] = set()
#: the name under which a task holds the token its ask of ``complete()`` left in its lock's file (:func:`ask_ended`)
_TOKEN = "_nectar_step_token"
#: the descriptors of the locks held (:func:`held`) whose step was left undone, a token in its file
#: (:func:`left_undone`)
_tokened: set[int] = set()


@contextlib.contextmanager
def local_builds(data_dir: Path) -> Iterator[None]:
    """Within it, this process's steps (and those of the processes it forks) run under their locks (:func:`held`),
    kept in ``<data_dir>/step-locks``, and luigi's worker asks a step's ``complete()`` holding its lock if it is free
    (:func:`ask_held`, :func:`ask_ended`; nothing done around the asks outside a local build)."""
    global _folder
    before, _folder = _folder, data_dir / "step-locks"
    asks = around_complete_asks((_ask_held_for, ask_ended))
    try:
        yield
    finally:
        _folder = before
        around_complete_asks(asks)


#: the folder of a task's step (None: a task with no step here), as :func:`steps_found_by` was told
_folder_of: Callable[[luigi.Task], str | None] | None = None


def steps_found_by(folder_of: Callable[[luigi.Task], str | None]) -> None:
    """From now on in this process, ``folder_of(task)`` is the folder of ``task``'s step (None if it has none here):
    its lock's name."""
    global _folder_of
    _folder_of = folder_of


def _ask_held_for(task: luigi.Task) -> tuple[int, Path] | None:
    folder = _folder_of(task) if _folder_of is not None else None
    return ask_held(folder) if folder is not None else None


def _name(folder: Path, folder_key: str) -> Path:
    return folder / f"{hashlib.md5(folder_key.encode(), usedforsecurity=False).hexdigest()}.lock"


@contextlib.contextmanager
def held(folder_key: str) -> Iterator[int | None]:
    """The lock of the step whose folder is ``folder_key`` held within it (its descriptor), waited for as long as
    another process holds it; nothing (None) within a build that uses luigid (:func:`local_builds`)."""
    if _folder is None:
        yield None
        return
    name = _name(_folder, folder_key)
    fd = _locked(name, folder_key)
    holder = os.getpid()
    _held.add(fd)
    try:
        yield fd
    finally:
        if os.getpid() == holder and fd in _tokened:  # left undone, its token in the file: the file stays
            _tokened.discard(fd)
            _held.discard(fd)
            os.close(fd)
        elif os.getpid() == holder:  # not in a forked process that ends the block too: its copy is closed already
            _let_go(fd, name)


def _let_go(fd: int, name: Path) -> None:
    """Remove the lock's file (under the lock: a waiter on it opens the name again, :func:`_locked`) and let it go."""
    _held.discard(fd)
    try:
        name.unlink()
    finally:
        os.close(fd)


def ask_held(folder_key: str) -> tuple[int, Path] | None:
    """Before luigi's worker asks ``complete()`` of the step whose folder is ``folder_key``, in a local build: the
    step's lock taken, if no other process holds it (its descriptor and file; None if not taken)."""
    if _folder is None:
        return None
    name = _name(_folder, folder_key)
    try:
        name.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, name):
            _held.add(fd)
            return fd, name
    except OSError:  # held elsewhere (BlockingIOError), or the file cannot be locked: asked as before
        pass
    os.close(fd)
    return None


def ask_ended(task: luigi.Task, lock: tuple[int, Path] | None, complete: bool) -> None:
    """After luigi's worker asked ``task``'s ``complete()`` (holding its lock if ``lock``): undone, a token of this ask
    left in the lock's file and noted on the task (:func:`made_meanwhile` reads it); complete (or asked without the
    lock, or the token not written), none. The lock let go, its file removed if the step is complete."""
    task.__dict__.pop(_TOKEN, None)
    if lock is None:
        return
    fd, name = lock
    if complete:
        _let_go(fd, name)
        return
    try:
        _leave_token(task, fd)
    finally:
        _held.discard(fd)
        os.close(fd)


def left_undone(task: luigi.Task, fd: int | None) -> None:
    """``task``'s run, holding its step's lock (:func:`held`, its descriptor ``fd``), is left undone: luigi runs the
    dynamic dependencies it yielded, then runs it again from its start. A token left in the lock's file, which stays
    as the lock is let go: the run again finds it (:func:`made_meanwhile`) unless a run made the step meanwhile."""
    if fd is not None and _leave_token(task, fd):
        _tokened.add(fd)


def _leave_token(task: luigi.Task, fd: int) -> bool:
    """A new token written in the lock's file at ``fd`` (this process holds the lock) and noted on ``task``; whether
    it was."""
    token = os.urandom(16)
    try:
        os.ftruncate(fd, 0)
        if os.pwrite(fd, token, 0) != len(token):
            return False
    except OSError:
        return False
    task.__dict__[_TOKEN] = token
    return True


def made_meanwhile(task: luigi.Task, fd: int | None) -> bool:
    """Whether ``task``, whose lock this process now holds (:func:`held`, its descriptor ``fd``), is complete: another
    run made it while this one waited, or after luigi found it undone; it is not run again (luigi records it DONE).
    Not asked if the lock's file still holds the token luigi's ask left (:func:`ask_ended`): no run took the lock to
    make it since. Asked only under a lock: with luigid, luigid's grant is what keeps runs apart."""
    if fd is None:
        return False
    token: bytes | None = task.__dict__.pop(_TOKEN, None)
    if token is not None and os.pread(fd, len(token) + 1, 0) == token:
        return False
    if task.complete() is True:
        logger.info("step %s was made by another run meanwhile: not run again", task.task_id)
        return True
    return False


def _locked(name: Path, folder_key: str) -> int:
    """A descriptor of the file ``name`` holding its exclusive lock, once it has it (the file made if missing) and
    ``name`` still names that file (its holder before removed it as it let it go)."""
    waited = False
    while True:
        name.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    logger.info("step %s waits for another run that makes it", folder_key)
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, name):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _forked() -> None:
    """In a process just forked: close its copies of the lock descriptors of its parent (the locks stay the
    parent's, held by its own descriptors)."""
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forked)


def _same_file(fd: int, name: Path) -> bool:
    """Whether ``name`` names the file open at ``fd`` still."""
    try:
        status = os.stat(name)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (status.st_dev, status.st_ino) == (opened.st_dev, opened.st_ino)
