"""The session compiled the repository's modules as it started (tests/helpers/bytecode.py): a process it starts under
``PYTHONDONTWRITEBYTECODE`` reads their bytecode, and compiles none of them from source."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from harness import REPO
from tests.helpers.bytecode import MODULES, PACKAGES


def locked_by_this_process(path: Path) -> bool:
    """Whether this process holds a ``flock`` on ``path``: a line of ``/proc/locks`` with its pid and the file's
    device and inode (``1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF``; a waiter's says ``->``)."""
    stat = path.stat()
    file = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    held = (line.split() for line in Path("/proc/locks").read_text().splitlines())
    return any(fields[1:2] == ["FLOCK"] and fields[4:6] == [str(os.getpid()), file] for fields in held)


#: whether this module was imported (its asserts rewritten, its bytecode written or read) while its collection held
#: its file's lock (tests/helpers/bytecode.py's one_rewrite): what keeps the xdist workers of a clean clone from each
#: rewriting every module
LOCKED_AS_COLLECTED = locked_by_this_process(Path(__file__))


def test_a_process_the_suite_starts_compiles_none_of_the_repositorys_modules_it_imports() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    probe = "import app, nectar.service, nectar.executor, harness"
    said = subprocess.run(
        [sys.executable, "-v", "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stderr
    ours = tuple(f"{REPO}/{name}/" for name in PACKAGES) + tuple(f"{REPO}/{name}" for name in MODULES)
    sources = [line.split()[-1].strip("'") for line in said.splitlines() if line.startswith("# code object from ")]
    read = [path for path in sources if path.startswith(ours)]
    compiled = [path for path in read if path.endswith(".py")]
    assert len(read) > 100 and not compiled, compiled  # ~170 modules of nectar, api, harness


def test_the_collection_left_pytests_bytecode_of_this_module_for_the_next_session() -> None:
    """pytest wrote the bytecode of this module, its asserts rewritten, as it collected it (beside its own name and
    its version, in ``__pycache__``): the next session's workers read it instead of rewriting the module. pytest's
    bytecode is checked by the source's hash (PEP 552), not its time: a module touched or checked out again with the
    same text keeps it, so the hash it records is what tells it is this text's."""
    source = REPO / "tests" / "harness" / "test_bytecode.py"
    written = list((source.parent / "__pycache__").glob(f"{source.stem}.*pytest*.pyc"))
    text_hash = importlib.util.source_hash(source.read_bytes())[:8]
    assert any(path.read_bytes()[8:16] == text_hash for path in written), written


def test_this_module_was_collected_holding_its_files_lock_so_no_other_worker_rewrote_it_meanwhile() -> None:
    assert LOCKED_AS_COLLECTED
