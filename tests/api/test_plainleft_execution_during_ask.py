"""A chain file executed (first, or again after a save) while another thread's ask of a chain that moved its folder is
under way (a slow ``complete()``, in the folder, under ``luigi_state._CWD_LOCK``): a file whose code moves no folder
is executed without that lock, so its submission is answered meanwhile. review21's guard in its original form: the
chains are not listed first, so each is executed at its first submission, the second during the slow ask (its
chains are review21's)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.test_review21_guard_cwd_asks import MOVED, OTHER
from tests.conftest import wait_until


def test_a_chain_file_executed_during_a_slow_ask_of_a_moved_chain_does_not_wait_for_it(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
) -> None:
    """The slow task's submission waits in its ``complete()`` (its marker written, its gate shut); meanwhile the other
    chain is executed at its first submission, then saved and submitted again (executed anew): both answered 202
    before the gate opens."""
    folder, asked, gate = tmp_path / "moved-folder", tmp_path / "asked", tmp_path / "gate"
    folder.mkdir()
    write_chain("moved/slow_chain", MOVED.format(folder=str(folder), asked=str(asked), gate=str(gate)))
    quick_chain = OTHER.format(out=str(tmp_path / "quick.txt"))
    write_chain("plain/quick_chain", quick_chain)
    client = client_for(settings)
    answers: list[tuple[str, int]] = []

    def submit(ref: str) -> None:
        answers.append((ref, client.post(f"/api/chains/{ref}", json={}).status_code))

    def quick_twice() -> None:
        submit("plain/quick_chain/QuickTask")
        write_chain("plain/quick_chain", f"{quick_chain}\n# saved\n")
        submit("plain/quick_chain/QuickTask")

    slow = threading.Thread(target=submit, args=("moved/slow_chain/SlowTask",))
    slow.start()
    try:
        wait_until(asked.exists)  # the slow submission is in its complete(), holding the lock
        quick = threading.Thread(target=quick_twice)
        quick.start()
        wait_until(lambda: len(answers) == 2)
        # the slow one still held at its gate
        assert answers == [("plain/quick_chain/QuickTask", 202)] * 2, answers
    finally:
        gate.touch()
        slow.join()
    assert answers[-1] == ("moved/slow_chain/SlowTask", 202), answers
