"""Gates that make a fork wait until no other thread of the process is inside what a fork must not copy mid-use.

A fork copies a process as it is, with the locks its other threads hold at that instant; in the child those threads
do not exist, so what they held is held for ever:

- :data:`SQLITE`: SQLite keeps state per process (the locks a connection holds on the WAL index, a write
  transaction's, a read mark; its own mutexes). A child forked while another thread of its parent was inside a
  transaction found every connection it opened locked: a step forked from an attempt (its heartbeat thread
  writing) waited 30 s per write, forever. The registry's threads use SQLite through it.
- :data:`IMPORTS`: a module being imported is locked until its import ends. A worker whose clock threads reload
  a changed chain file (importing what it imports) while the worker forks an attempt would leave the attempt
  waiting on that module's lock for ever, at its first import of the same module. Chain files are executed
  through it (:func:`nectar.catalog.loader.load_chain_module`).

Threads use what a gate guards as many at once as they like (``with gate.inside():``); a fork waits for the last
one to leave, and holds the next until it is done.

A module's own lock, held briefly around what a gate does not guard, is made anew in each child instead
(:func:`lock_made_anew_in_children`): a parent's thread may hold it at the fork, and the child's first use waited on
it for ever (a stray copy of its parent, with the threads it started, that only a SIGKILL ended).
"""

from __future__ import annotations

# imported before the gates register theirs: LOCKING_BEFORE_FORK
import concurrent.futures.thread  # noqa: F401
import logging  # noqa: F401
import os
import threading
from collections.abc import Callable, MutableMapping
from threading import get_ident
from typing import Any, TypeVar

A = TypeVar("A")
T = TypeVar("T")


class ForkGate:
    """Threads enter and leave at will (``with gate.inside():``); a fork (``before`` to ``after_*``) waits until
    none is in, and keeps out all but the forking thread itself (whose own hooks may use what the gate guards)
    until it is done.

    A thread enters and leaves without the gate's lock (a registry read goes through it: the lock was two of its
    acquisitions per read): it notes itself inside (:attr:`_depths`, its own item, set or deleted in one step under
    the GIL), then looks whether a fork is being made; a fork notes itself (:attr:`_forking`), then looks whether
    any other thread is inside. Each looks after the other noted itself, so one of the two sees the other: a thread
    that sees a fork steps back out and waits on the lock, which the forking thread holds but while it waits."""

    def __init__(self, along: ForkGate | None = None) -> None:
        #: the gate that holds the lock, the fork under way and the forks noted over, shared by every gate made
        #: ``along`` it (each with threads inside of its own): a fork waits for the threads inside any of them, and
        #: is made through that one alone (the first's hooks). Two gates of their own each held their lock while a
        #: fork waited at the other: a thread inside that forked then waited for that lock, and the fork for it. A
        #: thread inside one enters another at once while a fork waits (the fork waits for it already): it stepped
        #: back out to wait for the fork, which waited for it to leave the first (a chain file that used the registry)
        self._gate: ForkGate = self if along is None else along._gate
        #: how deep each thread inside is, by its id (the registry may nest its uses: only the outermost counts); a
        #: thread that is not inside has no item
        self._depths: dict[int, int] = {}
        if along is None:
            self._rooms: list[dict[int, int]] = [self._depths]
            self._open()
        else:
            self._gate._rooms.append(self._depths)

    def _open(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: the thread that is forking, if one is (it holds the lock meanwhile)
        self._forking: int | None = None
        #: by fork under way, the thread it found noted as forking (one waiting for the threads inside, the forking
        #: thread among them), noted again once it is done
        self._noted_before: list[int | None] = []

    def inside(self) -> ForkGate:
        """While the caller uses what the gate guards: no fork happens meanwhile."""
        return self

    def __enter__(self) -> None:
        me = get_ident()
        depth = self._depths.get(me, 0)
        self._depths[me] = depth + 1
        gate = self._gate
        forking = gate._forking
        if depth or forking is None or forking == me:  # in already (a fork waits for it), none forking, or forking
            return
        if any(me in room for room in gate._rooms if room is not self._depths):  # in a gate made along: waited for
            return
        # a fork is being made, and waits for this thread: out again until it is done
        with gate._lock:
            while gate._forking is not None:
                del self._depths[me]
                gate._changed.notify_all()
                gate._changed.wait()
                self._depths[me] = 1

    def __exit__(self, *_: object) -> None:
        me = get_ident()
        depth = self._depths[me] - 1
        if depth:
            self._depths[me] = depth
            return
        del self._depths[me]
        if self._gate._forking is not None:
            self._gate._notify(me)

    def _notify(self, me: int) -> None:
        """Tell a fork noted by another thread than ``me`` (which may wait for ``me`` to leave) that ``me`` left."""
        forking = self._forking
        if forking is not None and forking != me:  # a fork waits for this thread, maybe
            with self._lock:
                self._changed.notify_all()

    def call(self, work: Callable[[A], T], arg: A) -> T:
        """``work(arg)`` inside the gate, as ``with self.inside(): return work(arg)`` makes it, in one Python call
        instead of three (``inside``, ``__enter__``, ``__exit__``: each registry read goes through the gate). Entered
        and left as :meth:`__enter__` and :meth:`__exit__` enter and leave, by them whenever a fork is noted."""
        me = get_ident()
        depths = self._depths
        depth = depths.get(me, 0)
        depths[me] = depth + 1  # noted inside, then a look for a fork (as __enter__)
        forking = self._gate._forking
        if not (depth or forking is None or forking == me):  # a fork is being made: in by __enter__, which waits
            del depths[me]  # (and notes this thread again, then tells the fork it is out while it waits)
            with self:
                return work(arg)
        try:
            return work(arg)
        finally:
            if depth or self._gate._forking is not None:  # nested, or a fork noted meanwhile: left as __exit__ leaves
                self.__exit__()
            else:  # out, then a look for a fork noted since (as __exit__, which notifies it)
                del depths[me]
                if self._gate._forking is not None:
                    self._gate._notify(me)

    def before_fork(self) -> None:
        """Wait until no other thread forks and no other thread is inside, and keep the gate (its lock held across
        the fork). Forks are made one at a time: one that noted itself over another's that waited for the threads
        inside let the first fork while none was noted, and the second then forked noted by no one (a thread that
        entered meanwhile was inside during its fork). A thread inside forks at once all the same: a fork noted
        before it waits for it to leave, which it would never do while it waited for that fork; that one is noted
        again once it is done. Nor does a fork wait for a thread inside whose own fork it was noted over (two threads
        inside that both fork): that thread waits in this method for its turn, using nothing the gate guards, and
        each waited for the other to leave. The gates made along this one count as this one."""
        self._lock.acquire()
        me = get_ident()
        while self._forking is not None and not any(me in room for room in self._rooms):  # another's fork, waiting
            self._changed.wait()
        self._noted_before.append(self._forking)
        self._forking = me
        while any(room.keys() - {me} - set(self._noted_before) for room in self._rooms):  # another inside, not waiting
            self._changed.wait()

    def after_fork_in_parent(self) -> None:
        self._forking = self._noted_before.pop()
        self._changed.notify_all()
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """The child's only thread is the one that forked: a gate of its own, open, nobody else inside."""
        me = get_ident()
        self._open()
        for room in self._rooms:
            depth = room.get(me, 0)
            room.clear()
            if depth:
                room[me] = depth

    def register(self) -> None:
        """Make every fork of this process go through the gate (and those made along it)."""
        os.register_at_fork(
            before=self.before_fork, after_in_parent=self.after_fork_in_parent, after_in_child=self.after_fork_in_child
        )


def lock_made_anew_in_children(namespace: MutableMapping[str, Any], name: str) -> threading.Lock:
    """A new lock, bound to ``name`` in ``namespace`` (a module's ``globals()``), and bound there to another new one
    in every child forked from this process: its users read it by name at each use."""
    os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, threading.Lock()))
    return threading.Lock()


def pid() -> int:
    """This process's id, without a system call (``os.getpid`` makes one each time: ~40 a trivial run, most where a
    process looks whether it was forked since it made something of its own): noted at import, and again in every
    child forked from the process as the fork returns there (``os.register_at_fork``: every fork that goes on
    running Python runs it)."""
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


#: the modules the service imports whose at-fork hook takes a lock before a fork (``before``), imported at the top of
#: this module so that theirs are registered before the gates': hooks registered later run before (``before`` hooks run
#: in reverse order of registration), and a fork took the module's lock, then waited at a gate for a thread inside that
#: waited for it (both for ever): ``concurrent.futures.thread``'s global lock, which every ``submit`` takes;
#: ``logging``'s, which ``getLogger`` takes (a chain file's module imported inside :data:`IMPORTS`). Registered first,
#: their hooks run once the fork has waited at the gates, holding nothing. No other module of the standard library or of
#: the service's dependencies registers a ``before`` hook as it is imported (``random``'s, ``threading``'s are
#: ``after_in_child``); gunicorn's control server registers one as it starts, after these (it holds no lock, and its
#: waits are bounded). ``tests/nectar/test_forks.py`` checks the list against what a fresh interpreter registers.
LOCKING_BEFORE_FORK = ("concurrent.futures.thread", "logging")  # imported at the top of this module

_pid = os.getpid()
os.register_at_fork(after_in_child=_forked)
#: the gate of the SQLite registry's threads in this process
SQLITE = ForkGate()
SQLITE.register()
#: the gate of the chain files executed in this process (and what they import), a fork through :data:`SQLITE`'s
IMPORTS = ForkGate(along=SQLITE)
