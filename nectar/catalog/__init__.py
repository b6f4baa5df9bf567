"""The chains under a folder and the tasks in them, by the seed's naming rules: :class:`ChainCatalog`.

``<chains>/<type>/<name>_chain.py`` is a chain; the luigi tasks it exposes (those named ``...Task``
or listed in ``__nectar_tasks__``), their aliases and the tasks it hides, with why, are decided by
:mod:`nectar.exposure`; their upstream tasks by :mod:`nectar.upstream`. :mod:`nectar.catalog.loader`
imports a chain file and describes it (or names its import error) as :mod:`nectar.catalog.model`'s
:class:`ChainInfo` and :class:`TaskInfo`. :class:`ChainCatalog` re-imports a file only when its
mtime or size changed.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import cast

from nectar.catalog.loader import LATE, PROBING, Probe, finished_within, inspect_chain
from nectar.catalog.luigi_state import changed_imports, forget_module
from nectar.catalog.model import ChainInfo, TaskInfo
from nectar.catalog.stamps import Stamp, file_stamp
from nectar.config import chains_dir_refused, link_to_nothing, type_folder_said
from nectar.errors import ChainNotFound, ChainNotReady, TaskNotFound
from nectar.keys import is_name
from nectar.task import chain_module

CHAIN_SUFFIX = "_chain.py"
#: what the listing says of a chain file not executed in this process: not yet (its probe under way), or for good
#: (until it changes: what its probe said)
NOT_YET, NOT_HERE = "not executed here yet", "not executed here"
#: what it says of one whose probe has run past the budget (a patient probe: read once it ends)
UNENDED = "its import has not ended within {budget:g}s in a probe (read once it ends there, or once the file changes)"

#: what a probe's verdict on a chain is kept by: its file's stamp, and the stamps of the modules of the chains folder
#: it imports that changed since this process executed it (:func:`changed_imports`; none for most chains)
ProbeKey = tuple[Stamp, tuple[tuple[str, Stamp | None], ...]]

logger = logging.getLogger(__name__)


class ChainCatalog:
    """The chains under ``root``, kept in step with the files by their mtimes and sizes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._chains: dict[tuple[str, str], ChainInfo] = {}
        self._stamps: dict[tuple[str, str], Stamp] = {}
        #: each imported chain's file, as the str a stat takes (built once: pathlib's joins cost more than the stat)
        self._files: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        #: files that look like chains but were not imported, with the reason
        self.skipped: dict[str, str] = {}
        #: chain type folders that could not be listed (their chains are not listed), each with what was wrong
        self.unreadable: dict[str, str] = {}
        #: set once this process forks the processes that run the chains (:meth:`refresh_ahead`): each chain file is
        #: executed here only once a probe child ended it within these seconds
        self._budget: float | None = None
        #: by chain, the probe of its file (with the key probed; None until it is forked, by :meth:`_probe_wanted`)
        self._probes: dict[tuple[str, str], tuple[ProbeKey, Probe | None]] = {}
        #: the files whose probe is to be forked, as the lock is let go (no fork is made holding it)
        self._wanted: dict[tuple[str, str], Path] = {}
        #: by chain, what the last probe of its file said of it (None: ended within the budget) and the key probed
        self._verdicts: dict[tuple[str, str], tuple[ProbeKey, str | None]] = {}
        #: whether a read waits for the probe of a file it found changed, up to the budget since the probe was forked
        #: (the API's: a saved file that imports within the budget is live on that very request); the clock's never do
        self._reads_wait = False
        #: by chain, the key of a file :meth:`refresh_ahead` found late (its later probes are patient, not waited for;
        #: a gunicorn master's later refresh_ahead, before each worker it forks, does not probe it again)
        self._late: dict[tuple[str, str], ProbeKey] = {}

    def _scan(self) -> dict[tuple[str, str], tuple[Path, Stamp]]:
        found: dict[tuple[str, str], tuple[Path, Stamp]] = {}
        skipped: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        try:
            type_dirs = [e for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith((".", "_"))]
        except FileNotFoundError:  # no chain yet; unless it is a link to nothing, which is refused as at start
            dangling = link_to_nothing(self.root)
            if dangling is not None:
                raise dangling from None
            type_dirs = []
        except OSError as exc:  # a file, a folder it cannot read: one line naming it, not each request's traceback
            raise chains_dir_refused(self.root, exc) from None
        for type_dir in type_dirs:
            try:
                entries = list(os.scandir(type_dir.path))
            except (FileNotFoundError, NotADirectoryError):  # gone (or made a file) since the folder was listed
                continue
            except OSError as exc:  # a type's folder it cannot read: passed over, named; the other types listed
                said = type_folder_said(self.root, Path(type_dir.path), exc)
                unreadable[type_dir.path] = f"{said}: its chains are not listed"
                continue
            for entry in entries:
                if not entry.name.endswith(CHAIN_SUFFIX) or not entry.is_file():
                    continue
                chain = entry.name[: -len(".py")]
                if not (is_name(type_dir.name) and is_name(chain)):
                    skipped[entry.path] = "names must be made of [A-Za-z0-9_]"
                    continue
                stamp = file_stamp(entry.path)
                if stamp is None:  # removed (or replaced) since its folder was listed: as a listing after finds it
                    continue
                found[(type_dir.name, chain)] = (Path(entry.path), stamp)
        self.skipped = skipped
        if unreadable != self.unreadable:  # said once a change, not on every listing
            for said in sorted(set(unreadable.values()) - set(self.unreadable.values())):
                logger.warning("%s", said)
            self.unreadable = unreadable
        return found

    def refresh(self) -> bool:
        """Import new and changed chain files, forget removed ones; True if anything changed."""
        with self._lock:
            changed = self._in_step(self._scan())
        self._probe_wanted()
        if self._probes and self._reads_wait and self._awaited():  # a file's probe ended since: read it again
            with self._lock:
                changed = self._in_step(self._scan()) or changed
            self._probe_wanted()
        return changed

    def _in_step(self, found: dict[tuple[str, str], tuple[Path, Stamp]]) -> bool:
        """The chains brought in step with the files ``found`` (:meth:`_scan`); True if anything changed. Called with
        the lock held."""
        changed = False
        for ref in set(self._chains) - set(found):
            self._forget(ref)
            changed = True
        for ref, (path, stamp) in found.items():
            changed = self._sync(ref, path, stamp) or changed
        return changed

    def refresh_ahead(self, budget: float, reads_wait: bool = False) -> list[Path]:
        """:meth:`refresh`, for a process that forks the processes that run the chains (a worker, its clock): from now
        on each chain file is executed here only once a child process of its own executed it to its end within
        ``budget`` seconds (:class:`~nectar.catalog.loader.Probe`); a file whose import hangs, is slow or ends its
        process (a database or share that does not answer) is left to its runs, as a spare leaves it, until it changes
        (a hung import here would hold up every run; one cut short here could leave half an extension imported in
        every process forked after). Here the probes are waited for (before the process forks, or starts threads);
        a later read (:meth:`refresh`, :meth:`refresh_chain`: the clock's loops, a hot reload) never waits for one:
        a file still being probed is told as not executed here yet, and read again at the first read after its probe
        ended. Answers the files left. Costs each chain's execution twice, once, as the worker starts, and again for
        each change.

        ``reads_wait`` (the API's catalog, turned so in gunicorn's master before it forks its workers): a later read
        that finds a file changed waits for its probe up to ``budget`` seconds since it was forked (never under the
        lock), so that a saved file that imports within the budget is live on that very request; a file late here
        is not waited for again by any read (its probe is patient, forked by the first read of the process that
        reads: the master's workers, not the master), and is not probed again by a later call of this until it
        changes (a gunicorn master calls it before each worker it forks)."""
        self._budget = budget
        self._reads_wait = reads_wait
        found = self._scan()
        with self._lock:  # the chains already in step (a refresh before), or found late before, are not probed again
            keys = {ref: self._key(ref, stamp) for ref, (_, stamp) in found.items()}
            fresh = {
                ref: there
                for ref, there in found.items()
                if self._stamps.get(ref) != there[1] and self._late.get(ref) != keys[ref]
            }
        try:
            verdicts = finished_within([(ref, path) for ref, (path, _) in fresh.items()], budget)
        except OSError as exc:  # no child to be had (a fork refused: memory, a process limit): executed here, unbounded
            logger.warning("the chain files are executed without a probe first: %s", exc)
            verdicts = dict.fromkeys(fresh)
        late = LATE.format(budget=budget)
        with self._lock:  # a file late here is probed again, patiently (:meth:`_probe_wanted`): one that ends is read
            self._verdicts.update({ref: (keys[ref], said) for ref, said in verdicts.items() if said != late})
            self._late.update({ref: keys[ref] for ref, said in verdicts.items() if said == late})
            self._in_step(found)
        return [fresh[ref][0] for ref, said in verdicts.items() if said is not None]

    def refresh_chain(self, chain_type: str, chain: str, again: bool = True) -> None:
        """Bring one chain in step with its file, with one stat (a submission's hot path: no folder scan); ``again``:
        read it again if its probe (a read that waits for it: the API's) told since."""
        ref = (chain_type, chain)
        file = self._files.get(ref)  # a chain imported before: its file's name, checked then
        if file is None:
            path = self.root / chain_type / f"{chain}.py"
            named = is_name(chain_type) and is_name(chain) and not chain_type.startswith("_")  # as _scan finds it
            file = str(path) if named and path.name.endswith(CHAIN_SUFFIX) else None
        stamp = file_stamp(file) if file is not None else None
        with self._lock:
            if stamp is not None and file is not None:
                self._sync(ref, file, stamp)
            elif ref in self._chains:
                self._forget(ref)
        self._probe_wanted()
        if again and self._probes and self._reads_wait and self._awaited(ref):  # its probe ended since: read it again
            self.refresh_chain(chain_type, chain, again=False)

    def _sync(self, ref: tuple[str, str], path: Path | str, stamp: Stamp) -> bool:
        """(Re)import a chain whose file's stamp changed; True if it did. Called with the lock held."""
        if self._stamps.get(ref) == stamp and not changed_imports(chain_module(*ref)):  # nor a module it imports
            return False
        left = self._probed(ref, Path(path), self._key(ref, stamp)) if self._budget is not None else None
        if left == PROBING:
            error = f"{NOT_YET}: {self._probing_said(ref)}"
            held = self._chains.get(ref)
            if held is not None and (not (held.error or "").startswith(NOT_HERE) or held.error == error):
                return False  # changed: its last execution here stands until its probe ends (or nothing new to say)
            self._chains[ref] = ChainInfo(*ref, Path(path), {}, error=error, import_failed=True)
        elif left is None:
            self._chains[ref] = inspect_chain(Path(path), *ref)
        else:
            self._chains[ref] = ChainInfo(*ref, Path(path), {}, error=f"{NOT_HERE}: {left}", import_failed=True)
        if left != PROBING:  # told for this stamp: not read again until the file changes
            self._stamps[ref] = stamp
        self._files[ref] = str(path)
        return True

    def _probing_said(self, ref: tuple[str, str]) -> str:
        """Why a chain whose probe is under way is not executed here: being probed, or (once its probe has run past the
        budget, or it was found late as the process started) its import has not ended within the budget. Called with
        the lock held."""
        key, probe = self._probes[ref]
        if self._late.get(ref) == key or (probe is not None and not probe.patience()):
            return UNENDED.format(budget=self._budget)
        return PROBING

    def _key(self, ref: tuple[str, str], stamp: Stamp) -> ProbeKey:
        """What a probe's verdict on the chain ``ref`` whose file is at ``stamp`` is kept by (:data:`ProbeKey`): a
        module of the chains folder it imports that changed since it was executed here (a helper saved) is executed
        anew with it, so a verdict on the file alone is not one on what its execution now runs. A stat a module its
        execution here imported (none for most chains); nothing else."""
        changed = changed_imports(chain_module(*ref))
        if not changed:
            return stamp, ()
        files = {name: getattr(sys.modules.get(name), "__file__", None) for name in changed}
        return stamp, tuple((name, file_stamp(file) if isinstance(file, str) else None) for name, file in files.items())

    def _probed(self, ref: tuple[str, str], path: Path, key: ProbeKey) -> str | None:
        """What a probe said of the file at ``path`` as ``key`` (None: it ended within the budget: it may be executed
        here; :data:`~nectar.catalog.loader.PROBING` while its probe runs, one asked for if none is). Never waits.
        Called with the lock held."""
        verdict = self._verdicts.get(ref)
        if verdict is not None and verdict[0] == key:
            return verdict[1]
        held = self._probes.get(ref)
        if held is not None and held[0] == key:
            probe = held[1]
            if probe is None:  # asked for, not forked yet
                return PROBING
            probe.poll()
            if not probe.over:
                return PROBING
            del self._probes[ref]
            self._verdicts[ref] = (key, probe.verdicts[ref])
            return probe.verdicts[ref]
        self._stop_probe(ref)  # of the file as it was before: changed since
        self._probes[ref] = (key, None)
        self._wanted[ref] = path
        return PROBING

    def _awaited(self, only: tuple[str, str] | None = None) -> bool:
        """For a catalog whose reads wait (:meth:`refresh_ahead`'s ``reads_wait``): wait, the lock let go, until each
        probe under way has told its file's verdict or run past the budget since it was forked (a probe of a file found
        late as the process started is not waited for; ``only``: that chain's alone); True if one told meanwhile (the
        caller reads again). Each is watched on a copy of its pipe's end (:meth:`Probe.watched`): another thread may
        poll or stop it meanwhile."""
        with self._lock:
            under_way = [
                (probe.watched(), probe.patience())
                for ref, (key, probe) in self._probes.items()
                if probe is not None
                and not probe.over
                and self._late.get(ref) != key
                and probe.patience() > 0
                and only in (None, ref)
            ]
        if not under_way:
            return False
        deadline = time.monotonic() + max(patience for _, patience in under_way)
        watched = [fd for fd, _ in under_way]
        told = False
        try:
            while watched and (left := deadline - time.monotonic()) > 0:
                ready = select.select(watched, [], [], left)[0]
                told = told or bool(ready)
                watched = [fd for fd in watched if fd not in ready]
        finally:
            for fd, _ in under_way:
                os.close(fd)
        return told

    def _probe_wanted(self) -> None:
        """Fork the probes asked for (:meth:`_probed`), the lock let go: a fork waits at the fork gates
        (:mod:`nectar.forks`) for the threads inside, one of which may wait for this lock. A probe dies with the
        thread that forked it (PDEATHSIG is a thread's): the clock's loops, which live as long as their process."""
        if not self._wanted:
            return
        with self._lock:
            wanted, self._wanted = self._wanted, {}
            keys = {ref: self._probes[ref][0] for ref in wanted if ref in self._probes}
        for ref, key in keys.items():
            try:
                probe = Probe([(ref, wanted[ref])], cast(float, self._budget), patient=True)
            except OSError as exc:  # no child to be had now (memory, a process limit): asked for again at the next read
                logger.warning("%s is not probed yet: %s", wanted[ref], exc)
                with self._lock:
                    if self._probes.get(ref) == (key, None):
                        del self._probes[ref]
                continue
            with self._lock:
                if self._probes.get(ref) == (key, None):
                    self._probes[ref] = (key, probe)
                    continue
            probe.stop()  # the file changed or went meanwhile

    def _stop_probe(self, ref: tuple[str, str]) -> None:
        """End the probe of a file that changed or went, if one runs. Called with the lock held."""
        held = self._probes.pop(ref, None)
        self._wanted.pop(ref, None)
        if held is not None and held[1] is not None:
            held[1].stop()

    def _forget(self, ref: tuple[str, str]) -> None:
        """Drop a chain whose file is gone. Called with the lock held."""
        del self._chains[ref]
        self._stamps.pop(ref, None)
        self._files.pop(ref, None)
        self._verdicts.pop(ref, None)
        self._late.pop(ref, None)
        self._stop_probe(ref)
        forget_module(chain_module(*ref))
        sys.modules.pop(chain_module(*ref), None)

    def chains(self) -> list[ChainInfo]:
        self.refresh()
        return self.held()

    def held(self) -> list[ChainInfo]:
        """The chains as last read, no file looked at (a gunicorn master's warm-up, after its :meth:`refresh_ahead`: a
        read there would fork a patient probe in the master, which its workers should fork themselves)."""
        return [self._chains[ref] for ref in sorted(self._chains)]

    def none_found(self) -> str:
        """What a listing that found no chain says, so a newcomer sees why: the folder it looked in (and whether it
        is there), the name a chain file must have, and the files passed over for their names (as last scanned)."""
        there = "" if self.root.is_dir() else " (no such folder)"
        said = f"no chains under {self.root}{there}: a chain is a file <type>/<name>{CHAIN_SUFFIX} in it"
        if self.skipped:
            names = ", ".join(os.path.relpath(path, self.root) for path in sorted(self.skipped)[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            said += f", made of [A-Za-z0-9_] (passed over: {names}{more})"
        passed = self.passed_over()
        return said if passed is None else f"{said}; {passed}"

    def passed_over(self) -> str | None:
        """What the last listing could not read (a chain type folder it cannot list), so a listing that holds the
        other chains says why some are missing; None when it read every folder."""
        if not self.unreadable:
            return None
        return "; ".join(self.unreadable[path] for path in sorted(self.unreadable))

    def types(self) -> dict[str, list[ChainInfo]]:
        grouped: dict[str, list[ChainInfo]] = {}
        for info in self.chains():
            grouped.setdefault(info.chain_type, []).append(info)
        return grouped

    def chain(self, chain_type: str, chain: str) -> ChainInfo:
        self.refresh()
        return self._chain(chain_type, chain)

    def _chain(self, chain_type: str, chain: str) -> ChainInfo:
        info = self._chains.get((chain_type, chain))
        if info is None:
            raise ChainNotFound(f"no chain {chain_type}/{chain}")  # never the server's folders
        return info

    def known_task(self, chain_type: str, chain: str, task: str) -> TaskInfo | None:
        """A task as last seen, without touching the disk unless it was never seen (for hot paths)."""
        info = self._chains.get((chain_type, chain))
        found = info.resolve(task) if info is not None else None
        if found is None:
            self.refresh()
            info = self._chains.get((chain_type, chain))
            found = info.resolve(task) if info is not None else None
        return found

    def task_now(self, info: TaskInfo) -> TaskInfo:
        """``info`` to make a task of now: itself, unless its chain's file computes a parameter's default as it is
        executed (``default=datetime.date.today()``: :attr:`ChainInfo.anew`); then the file is executed again, as
        ``python -m luigi`` executes it for each command, and the task is that execution's (kept for the reads that
        follow; ``info`` if it fails now: the run's attempt executes the file itself and says why)."""
        ref = (info.chain_type, info.chain)
        chain = self._chains.get(ref)
        if chain is None or not chain.anew:
            return info
        with self._lock:
            again = inspect_chain(chain.path, *ref)
            if again.error:
                return info
            self._chains[ref] = again
        return again.resolve(info.name) or info

    def task(self, chain_type: str, chain: str, task: str) -> TaskInfo:
        """A task, its chain's file looked at first (one stat, no scan of the folder: a submission's hot path)."""
        self.refresh_chain(chain_type, chain)
        info = self._chain(chain_type, chain)
        if info.error:
            failure = "failed to import: " if info.import_failed else "exposes no task: "
            if info.error.startswith(NOT_YET):  # its import under way in a probe: ask again
                raise ChainNotReady(f"chain {info.ref} is {info.error}")
            if info.error.startswith(NOT_HERE):  # its probe's word: what it says is why
                failure = "is "
            raise ChainNotFound(f"chain {info.ref} {failure}{info.error}")
        found = info.resolve(task)
        if found is not None:
            return found
        hidden = next((h.reason for h in info.hidden if h.name == task), None)
        if hidden is not None:
            raise TaskNotFound(f"{task} is a luigi task of chain {info.ref} but is not exposed: {hidden}")
        known = ", ".join(info.tasks) or "none"
        raise TaskNotFound(f"no task {task} in chain {info.ref} (tasks: {known})")
