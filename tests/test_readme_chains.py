"""Every chain the README shows is complete: each Python block that defines a class names its chain file in its
first line (``# chains/<type>/<name>_chain.py``), and written there it imports, exposes every task class it defines
(none hidden, no error, no schedule or trigger refused) and gives each one a ``run()`` of its own. Before, the
schedule and trigger examples had no ``run()`` (luigi's ``Task.run``, which does nothing: a run of theirs
made no output) and the pre-load example named no file and imported nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nectar.catalog import ChainCatalog
from tests.conftest import REPO

#: a fenced Python block of the README, and a class defined at its top level
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
CLASS = re.compile(r"^class (\w+)\(", re.M)
#: the first line of a chain's block: the file it is
FILE = re.compile(r"# chains/(\w+)/(\w+_chain)\.py\b")


def chain_blocks() -> list[str]:
    blocks = BLOCK.findall((REPO / "README.md").read_text())
    return [block for block in blocks if CLASS.search(block)]


def test_the_readme_shows_chains() -> None:
    """The blocks below are found (a README reworded past the pattern fails here, not silently)."""
    assert len(chain_blocks()) >= 4


@pytest.mark.parametrize("block", chain_blocks(), ids=lambda block: block.splitlines()[0][:60])
def test_each_readme_chain_imports_and_exposes_every_task_it_defines_with_its_run(tmp_path: Path, block: str) -> None:
    named = FILE.match(block)
    assert named, f"a chain block names its file first (# chains/<type>/<name>_chain.py), not {block.splitlines()[0]}"
    chain_type, chain = named.groups()
    path = tmp_path / "chains" / chain_type / f"{chain}.py"
    path.parent.mkdir(parents=True)
    path.write_text(block)

    info = ChainCatalog(tmp_path / "chains").chain(chain_type, chain)

    assert info.error is None, info.error
    assert (info.hidden, info.schedule_errors, info.trigger_errors) == ((), (), ())
    assert set(info.tasks) == set(CLASS.findall(block))
    no_run = [task.name for task in info.tasks.values() if "run" not in vars(task.cls)]
    assert no_run == [], "each task defines its own run()"
