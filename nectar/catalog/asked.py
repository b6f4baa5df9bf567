"""A task's ``output()`` and ``complete()`` asked outside its runs (the API, the clock, ``nectar status``) as its run
asks them, in its run's working directory, with the process's working directory moved only for the code that may read
it.

luigi resolves a relative ``LocalTarget`` path against the working directory at the call, and a chain file that moves
to its folder at its top (``os.chdir``) has its runs start there (:func:`~nectar.catalog.luigi_state.held_to`). The
working directory is the process's, and the API answers in threads: moved for an ask, it is moved under one lock
(:func:`~nectar.catalog.luigi_state.asked_in_run_folder`), and every other ask that reads it waits. So the lock is
taken only for the code that may read it:

- luigi's own code reads it only through a relative ``LocalTarget`` path: luigi's ``complete()`` (the task class does
  not override it) is asked of the outputs with each such path made absolute against the run's folder
  (:func:`~nectar.catalog.luigi_state.run_folder`), and a target whose ``exists()`` is luigi's or nectar's own and
  reads no working directory (an absolute path, an ``s3://`` one, a ``MockTarget``) is asked with no lock and where
  the process is; any other (a relative path of another ``FileSystemTarget``, a database URL) in the run's folder;
- a task's own ``output()`` of a chain that moved is asked in its folder under the lock (it may name a path by
  ``os.getcwd()`` or ``os.path.abspath``, as its run would: it builds targets, briefly); of a chain that did not move,
  where the process is, with no lock (a relative path is made absolute against the process's own folder, not the one
  another thread's ask moved to meanwhile; an ``output()`` that reads the working directory itself while another
  thread holds it moved reads that folder: the one case left);
- a task's own ``complete()``, and a target's own ``exists()`` (a class of the chain's), are asked in the run's folder
  under the lock as before (:func:`~nectar.catalog.luigi_state.asked_in_run_folder`): user code whose reads of the
  working directory cannot be seen.

Nothing of this is done where no chain module moved the working directory (one look at a dictionary).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import luigi
import luigi.mock
from luigi.task import flatten

from nectar.catalog.luigi_state import asked_in_folder, asked_in_run_folder, run_folder

#: the packages whose targets' ``exists()`` reads the working directory only through the target's path
_OWN_CODE = ("luigi.", "nectar.")


def run_outputs(task: luigi.Task, module: str) -> list[Any]:
    """``task.output()`` flattened, as a run of the chain module ``module`` names them: each ``LocalTarget`` with a
    relative path a copy of it with the path absolute against the run's folder (:func:`run_folder`); asked in that
    folder where a chain module moved it (:func:`asked_in_folder`), else where the process is, with no lock."""
    found = run_folder(module)
    if found is None:  # no chain module moved the working directory: the process's is the run's
        return flatten(task.output())
    folder, moved = found
    if moved:
        with asked_in_folder(folder):
            outputs = flatten(task.output())
    else:
        outputs = flatten(task.output())
    return [_rebased(target, folder) for target in outputs]


def run_complete(task: luigi.Task, module: str) -> bool:
    """Whether ``task`` is complete, asked as a run of the chain module ``module`` asks it: its own ``complete()`` in
    the run's folder (:func:`asked_in_run_folder`); luigi's, of its outputs (:func:`run_outputs`), each asked where it
    is (its path absolute) unless its ``exists()`` is of a class of the chain's (then in the run's folder); a task
    without outputs is not complete, as luigi has it (without luigi's warning at each ask)."""
    if type(task).complete is not luigi.Task.complete:
        with asked_in_run_folder(module):
            return task.complete() is True
    outputs = run_outputs(task, module)
    return bool(outputs) and all(_exists(target, module) for target in outputs)


def _exists(target: Any, module: str) -> bool:
    if _folder_free(target):
        return bool(target.exists())
    with asked_in_run_folder(module):
        return bool(target.exists())


def _folder_free(target: Any) -> bool:
    """Whether ``target.exists()`` cannot read the working directory: luigi's or nectar's code (:func:`_own_exists`)
    of a path that is absolute (a ``LocalTarget`` :func:`_rebased`) or names its store (``s3://...``), or of luigi's
    in-memory ``MockTarget``. Any other (a ``FileSystemTarget`` of luigi's ``LocalFileSystem`` named relatively,
    ``luigi.contrib.sqla``'s ``sqlite:///relative.db``: review22's guard) is asked in the run's folder."""
    if not _own_exists(type(target)):
        return False
    if isinstance(target, luigi.mock.MockTarget):
        return True
    path = getattr(target, "path", None)
    return isinstance(path, str) and (os.path.isabs(path) or "://" in path)


def _own_exists(cls: type) -> bool:
    """Whether the ``exists()`` of targets of ``cls`` is luigi's or nectar's code (which reads the working directory
    only through the target's path)."""
    return str(getattr(getattr(cls, "exists", None), "__module__", "")).startswith(_OWN_CODE)


def _rebased(target: Any, folder: str) -> Any:
    """``target``, or where it is a ``LocalTarget`` with a relative path, a copy of it with that path joined to
    ``folder`` (the kernel resolves it as the run's working directory would: ``..`` left as it is)."""
    path = getattr(target, "path", None)
    if not isinstance(target, luigi.LocalTarget) or not isinstance(path, str) or os.path.isabs(path):
        return target
    held = getattr(target, "__dict__", None)
    if held is None:  # a class with __slots__ of its own
        rebased = copy.copy(target)
    else:  # copy.copy's reduce protocol took ~4x as long
        rebased = object.__new__(type(target))
        rebased.__dict__.update(held)
    rebased.path = os.path.join(folder, path)
    return rebased
