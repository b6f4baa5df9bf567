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
import sys
import threading
from collections.abc import Collection
from pathlib import Path

from nectar.catalog.loader import finished_within, inspect_chain
from nectar.catalog.luigi_state import changed_imports, forget_module
from nectar.catalog.model import ChainInfo, TaskInfo
from nectar.catalog.stamps import Stamp, file_stamp
from nectar.config import chains_dir_refused, link_to_nothing, type_folder_said
from nectar.errors import ChainNotFound, TaskNotFound
from nectar.keys import is_name
from nectar.task import chain_module

CHAIN_SUFFIX = "_chain.py"

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
            return self._in_step(self._scan())

    def _in_step(
        self, found: dict[tuple[str, str], tuple[Path, Stamp]], left: Collection[tuple[str, str]] = ()
    ) -> bool:
        """The chains brought in step with the files ``found`` (:meth:`_scan`), but for those ``left`` (to their
        runs: not executed here); True if anything changed. Called with the lock held."""
        changed = False
        for ref in set(self._chains) - set(found):
            self._forget(ref)
            changed = True
        for ref, (path, stamp) in found.items():
            if ref not in left:
                changed = self._sync(ref, path, stamp) or changed
        return changed

    def refresh_ahead(self, budget: float) -> list[Path]:
        """:meth:`refresh`, for a process about to fork the processes that run the chains (a worker): each chain file
        is executed first in a child process of its own (:func:`finished_within`), and here only if it ended there
        within ``budget`` seconds; a file whose import hangs or is slow (a database or share that does not answer) is
        left to its runs, as a spare leaves it (a hung import here would hold up every run; one cut short here could
        leave half an extension imported in every process forked after). Answers the files left. Costs each chain's
        execution twice, once, as the worker starts."""
        found = self._scan()
        with self._lock:  # the chains already in step (a refresh before) are not executed again
            fresh = {ref: there for ref, there in found.items() if self._stamps.get(ref) != there[1]}
        try:
            finished = finished_within([(ref, path) for ref, (path, _) in fresh.items()], budget)
        except OSError as exc:  # no child to be had (a fork refused: memory, a process limit): executed here, unbounded
            logger.warning("the chain files are executed without a probe first: %s", exc)
            finished = set(fresh)
        left = {ref: path for ref, (path, _) in fresh.items() if ref not in finished}
        with self._lock:
            self._in_step(found, left)
        return list(left.values())

    def refresh_chain(self, chain_type: str, chain: str) -> None:
        """Bring one chain in step with its file, with one stat (a submission's hot path: no folder scan)."""
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

    def _sync(self, ref: tuple[str, str], path: Path | str, stamp: Stamp) -> bool:
        """(Re)import a chain whose file's stamp changed; True if it did. Called with the lock held."""
        if self._stamps.get(ref) == stamp and not changed_imports(chain_module(*ref)):  # nor a module it imports
            return False
        self._chains[ref] = inspect_chain(Path(path), *ref)
        self._stamps[ref] = stamp
        self._files[ref] = str(path)
        return True

    def _forget(self, ref: tuple[str, str]) -> None:
        """Drop a chain whose file is gone. Called with the lock held."""
        del self._chains[ref]
        self._stamps.pop(ref, None)
        self._files.pop(ref, None)
        forget_module(chain_module(*ref))
        sys.modules.pop(chain_module(*ref), None)

    def chains(self) -> list[ChainInfo]:
        self.refresh()
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

    def task(self, chain_type: str, chain: str, task: str) -> TaskInfo:
        """A task, its chain's file looked at first (one stat, no scan of the folder: a submission's hot path)."""
        self.refresh_chain(chain_type, chain)
        info = self._chain(chain_type, chain)
        if info.error:
            failure = "failed to import" if info.import_failed else "exposes no task"
            raise ChainNotFound(f"chain {info.ref} {failure}: {info.error}")
        found = info.resolve(task)
        if found is not None:
            return found
        hidden = next((h.reason for h in info.hidden if h.name == task), None)
        if hidden is not None:
            raise TaskNotFound(f"{task} is a luigi task of chain {info.ref} but is not exposed: {hidden}")
        known = ", ".join(info.tasks) or "none"
        raise TaskNotFound(f"no task {task} in chain {info.ref} (tasks: {known})")
