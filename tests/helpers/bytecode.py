"""The repository's own modules compiled once as a session starts, so that no process the suite starts compiles them.

This machine's environment sets ``PYTHONDONTWRITEBYTECODE`` (so does the Dockerfile's, after pip compiled): Python then
writes the bytecode of no module it compiles, and every process the suite starts (each ``nectar`` command, luigid,
gunicorn, a worker and its attempts, a ``python -c`` that imports nectar, each xdist worker's test modules) compiled
nectar, api, harness and the tests it imports from their source, at every start: ~0.13 s of CPU for a ``nectar``
command (``nectar.service``, ``nectar.executor``: 0.50 s, 0.37 s with the bytecode at hand), ~0.15 s for the API's
app, over a thousand processes a session. Compiled ahead into the usual ``__pycache__`` folders (git ignores them),
it is read as installed packages' bytecode is; the variable still keeps every process from writing any of its own
(of a chain a test wrote, say). A source changed afterwards is compiled again in memory, as Python does when the
bytecode's recorded mtime and size no longer match it. Not ``chains/``: tests copy it without ``__pycache__``.

pytest's own bytecode of the test modules (their asserts rewritten) is written by the collection, while it runs
(:func:`collection_started`, :func:`collection_finished`): under the variable, each xdist worker rewrote and compiled
every test module again at every session, ~10 of its ~15 s of CPU before its first test. pytest reads that bytecode
whatever the variable says, and writes it where it writes no other (``sys.dont_write_bytecode``, its documented
switch): a collection imports the test modules from the repository, and no test has made a folder of its own yet.

In a clean clone (CI's every run) there is none yet, and the three xdist workers collect the same modules in the same
order at the same moment: each rewrote and compiled every one of them (~6 s of CPU a worker). A worker collects a
module holding its file's lock (:func:`one_rewrite`): the first to come rewrites it and writes its bytecode, the
others wait for it and read that, one module behind.
"""

from __future__ import annotations

import compileall
import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the packages of the repository's root that the suite's processes import, and its one module there
PACKAGES = ("nectar", "api", "harness", "benchmarks", "tests")
MODULES = ("app.py",)


def compile_ahead(repo: Path) -> None:
    """Write the bytecode of :data:`PACKAGES` and :data:`MODULES` that is missing or out of date; quietly: a checkout
    this user may not write to, or a file that does not compile, is left to each process as before."""
    for name in PACKAGES:
        compileall.compile_dir(repo / name, quiet=2)
    for name in MODULES:
        compileall.compile_file(repo / name, quiet=2)


#: ``sys.dont_write_bytecode`` as the collection found it
_WRITES_NONE: list[bool] = []


def collection_started() -> None:
    """pytest writes the bytecode of the test modules it rewrites while it collects them."""
    _WRITES_NONE.append(sys.dont_write_bytecode)
    sys.dont_write_bytecode = False


def collection_finished() -> None:
    """The process writes bytecode again as its environment says (no test's own module, its chain, is written)."""
    if _WRITES_NONE:
        sys.dont_write_bytecode = _WRITES_NONE.pop()


@contextmanager
def one_rewrite(module: Path) -> Iterator[None]:
    """Hold the lock of the test module's file (``flock``, let go as its descriptor closes, or as the process dies)
    while this process collects it: another process collecting it meanwhile waits, then reads the bytecode this one
    wrote instead of rewriting the module itself. A file that cannot be opened is collected without the lock."""
    try:
        fd = os.open(module, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
