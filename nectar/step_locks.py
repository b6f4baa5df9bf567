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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import luigi

logger = logging.getLogger(__name__)
#: the folder of the step locks of the builds of this process (and of the step processes it forks) that use luigi's
#: local scheduler; None: no lock (with luigid, or outside a build)
_folder: Path | None = None
#: the descriptors of the locks this process holds (:func:`held`), closed in a process forked since (:func:`_forked`)
_held: set[int] = set()


@contextlib.contextmanager
def local_builds(data_dir: Path) -> Iterator[None]:
    """Within it, this process's steps (and those of the processes it forks) run under their locks (:func:`held`),
    kept in ``<data_dir>/step-locks``."""
    global _folder
    before, _folder = _folder, data_dir / "step-locks"
    try:
        yield
    finally:
        _folder = before


@contextlib.contextmanager
def held(folder_key: str) -> Iterator[None]:
    """The lock of the step whose folder is ``folder_key`` held within it, waited for as long as another process
    holds it; nothing within a build that uses luigid (:func:`local_builds`)."""
    if _folder is None:
        yield
        return
    name = _folder / f"{hashlib.md5(folder_key.encode(), usedforsecurity=False).hexdigest()}.lock"
    fd = _locked(name, folder_key)
    holder = os.getpid()
    _held.add(fd)
    try:
        yield
    finally:
        if os.getpid() == holder:  # not in a forked process that ends the block too: its copy is closed already
            _held.discard(fd)
            try:
                name.unlink()  # under the lock: a waiter on this file opens the name again (:func:`_locked`)
            finally:
                os.close(fd)


def made_meanwhile(task: luigi.Task) -> bool:
    """Whether ``task``, whose lock this process now holds (:func:`held`), is complete: another run made it while this
    one waited, or after luigi found it undone; it is not run again (luigi records it DONE). Asked only under a
    lock: with luigid, luigid's grant is what keeps runs apart."""
    if _folder is None:
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
