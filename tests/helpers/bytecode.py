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
"""

from __future__ import annotations

import compileall
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
