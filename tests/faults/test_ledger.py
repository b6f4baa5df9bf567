"""The ledger chain's own lines (:mod:`tests.helpers.ledger`): an interruption of its task (the lease's signal
handler raising in the task's thread, which can land between any two bytecodes) is noted as the execution's ``fail``
wherever it lands after the ``start`` line and before the ``end`` line, and adds no line anywhere else.

Landing right after the ``start`` line left an execution with no end and no stop: the fault tests that act as soon
as they see that line (freeze the attempt, kill its worker) failed now and then under load
(``test_interrupt_grace``, and ``test_worker_dies``' worker killed alone: its ``requeued`` check)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.catalog.loader import load_chain_module
from nectar.config import Settings
from nectar.leases import Interrupted
from tests.helpers.ledger import CHAIN_TYPE, LEDGER_CHAIN, Ledger


def interrupting(note: Callable[[str, str], None], word: str, after: bool) -> Callable[[str, str], None]:
    """``note``, interrupted as it notes ``word``: before it writes the line, or (``after``) once it has."""

    def noted(said: str, task_id: str) -> None:
        if said == word and not after:
            raise Interrupted("the run was cancelled or reclaimed")
        note(said, task_id)
        if said == word and after:
            raise Interrupted("the run was cancelled or reclaimed")

    return noted


@pytest.mark.parametrize(
    ("word", "after", "lines"),
    [("start", False, []), ("start", True, ["start", "fail"]), ("end", True, ["start", "end"])],
    ids=["before the start line", "right after the start line", "right after the end line"],
)
def test_an_interrupted_task_notes_a_fail_only_between_its_start_and_its_end(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, word: str, after: bool, lines: list[str]
) -> None:
    ledger = Ledger(tmp_path / "ledger.txt")
    path = tmp_path / "ledger_chain.py"
    path.write_text(LEDGER_CHAIN.replace("@LEDGER@", repr(str(ledger.path))))
    chain = load_chain_module(path, CHAIN_TYPE, f"ledger_chain_{word}_{after}")
    monkeypatch.setattr(chain, "note", interrupting(chain.note, word, after))

    with pytest.raises(Interrupted):
        chain.LedgerTask(n=0).run()

    assert [line[0] for line in ledger.lines()] == lines
    assert all(execution.until < math.inf for execution in ledger.executions())  # each closed: an end, or a stop
