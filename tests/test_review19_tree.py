"""review19: what the repository tracks lets the README's two commands make their own ``.venv`` in a clean clone."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO


def test_no_tracked_file_is_a_link_out_of_the_repository_nor_in_the_venv() -> None:
    """A helper's worktree holds ``.venv`` as a link to the main checkout's (CONTRIBUTING's round set-up), and
    ``.gitignore``'s ``.venv/`` ignores a folder, not a link: a ``git add -A`` there commits it (wt65-gaps' 4a5f14d
    did). Merged, a clean clone's ``python3 -m venv .venv`` fails, ``[Errno 17] File exists`` (the link dangles on
    another machine), or installs into that other checkout's venv on this one. Passes on main; fails on a branch that
    tracks such a link (wt65-gaps: ``.venv -> /work/main/.venv``)."""
    listed = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    wrong = []
    for entry in filter(None, listed.stdout.split("\0")):
        mode, _, path = entry.partition("\t")
        top = path.split("/", 1)[0]
        if top == ".venv":
            wrong.append(f"{path}: inside the venv")
        elif mode.startswith("120000"):
            target = os.path.realpath(REPO / path)
            if os.path.commonpath([target, os.path.realpath(REPO)]) != os.path.realpath(REPO):
                wrong.append(f"{path} -> {os.readlink(REPO / path)}: a link out of the repository")
    assert not wrong, wrong
