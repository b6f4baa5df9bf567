"""A chain file another chain file imports (``from chains.<type> import base_chain``), fixed while the process that
holds it executes its importer, reaches the importer's next run, as a second ``python -m luigi --module
chains.<type>.<chain>`` would read it: each step as a worker (or a spare forked from it) takes it, played in order in a
process of its own (a fresh ``sys.modules``, the package ``chains`` of the test's folder), so that the order the
service's processes race through is the one each test sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO, base_env

BUG = 'def fixed_step():\n    return "bug"\n'
FIXED = 'def fixed_step():\n    return "fixed"\n'
#: a chain that imports another chain file as its helper (``{module}``)
USER = "from chains.stamped import {module} as helpers\n\n\ndef step():\n    return helpers.fixed_step()\n"

#: what the process does: ``write(chain, source)``, ``load(chain)`` (the catalog's execution of a chain file, or an
#: attempt's), ``ahead(chain)`` (a spare's execution ahead of its run), ``run(chain)`` (the attempt's module: what its
#: ``step()`` answers is printed)
PLAYER = """
import sys
from pathlib import Path

from nectar.catalog.loader import fresh_chain_module, load_ahead, load_chain_module

folder = Path(sys.argv[1])


def write(chain, source):
    (folder / f"{chain}.py").write_text(source)


def load(chain):
    load_chain_module(folder / f"{chain}.py", "stamped", chain)


def ahead(chain):
    assert load_ahead(folder / f"{chain}.py", "stamped", chain, 600.0)


def run(chain):
    print(fresh_chain_module(folder / f"{chain}.py", "stamped", chain).step())


"""

#: each case: its steps (:data:`PLAYER`'s calls)
CASES = {
    # review19's base_chain flake (1 run of its file in 3): the worker executed base_chain, the fix was saved, the
    # spare executed user_chain ahead (noting base_chain's file as it was then: fixed) with the module of the old one
    "saved-while-its-importer-is-executed": [
        "write('base_chain', BUG)",
        "write('user_chain', USER.format(module='base_chain'))",
        "load('base_chain')",
        "write('base_chain', FIXED)",
        "ahead('user_chain')",
        "run('user_chain')",
    ],
    # the importer executed first (Python's import executes the chain file and sets it on its package), then the
    # catalog executes the chain file itself, and again once fixed: the package's attribute was the first one still
    "imported-before-the-catalog-executed-it": [
        "write('z_chain', BUG)",
        "write('a_chain', USER.format(module='z_chain'))",
        "load('a_chain')",
        "load('z_chain')",
        "write('z_chain', FIXED)",
        "load('z_chain')",
        "run('a_chain')",
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_chain_file_fixed_while_a_chain_that_imports_it_is_executed_reaches_its_next_run(
    tmp_path: Path, case: str
) -> None:
    """Fails on main: the run reads 'bug', in both. The first: a chain file the catalog (or an attempt) executed had
    no stamp as executed, so its importer noted its file's stamp as the importer's execution ended, the fixed file's;
    the second: the changed chain file taken out of ``sys.modules`` but not off its package, where the importer's
    ``from chains.<type> import z_chain`` found the first module."""
    folder = tmp_path / "chains" / "stamped"
    folder.mkdir(parents=True)
    script = PLAYER + f"BUG, FIXED, USER = {BUG!r}, {FIXED!r}, {USER!r}\n" + "\n".join(CASES[case]) + "\n"
    env = base_env() | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fixed"], f"the chain file as saved did not reach the run: {done.stdout}"
