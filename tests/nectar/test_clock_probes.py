"""A process that forks and reads the chains as it goes (``nectar worker --clock``, ``nectar serve``'s; and ``nectar
clock``) executes a chain file only once a probe child ended it within the budget
(:meth:`~nectar.catalog.ChainCatalog.refresh_ahead`): a file whose import hangs, written after it started, holds up
none of the other chains' runs (one calling ``sys.exit``: ``tests/schedules/test_clock_chain_exits.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness import NECTAR, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end
from tests.nectar.test_chains_ahead import GATED
from tests.schedules.firing import TICK_CHAIN


def _done(service: Nectar, n: int) -> RunState:
    """Submit TickTask for the ``n``-th second of a day and wait for its run to end; its state."""
    submitted = service.submit("daily", "tick_chain", "TickTask", {"when": f"2026-05-01T0000{n:02d}"})
    assert submitted.run is not None
    run_id = submitted.run.id
    wait_until(lambda: (now := service.runs.get(run_id)) is not None and not now.state.active)
    ended = service.runs.get(run_id)
    assert ended is not None
    return ended.state


def test_a_chain_file_that_hangs_as_it_is_changed_holds_up_no_other_chains_run_under_clock(
    settings: Settings,
    processes: Processes,
    write_chain: Callable[[str, str], Path],
    tmp_path: Path,
) -> None:
    """``nectar worker --clock`` serving; a chain file written then whose import never ends: the clock's loops see
    it at their next pass, a probe child executes it (the marker names that child, never the worker), and the
    other chain's next run is DONE. Before, the loops executed the file in the worker, in their thread, holding
    the fork gate: the marker named the worker and the run was never claimed (no spare forked)."""
    write_chain("daily/tick_chain", TICK_CHAIN.format(ledger=str(tmp_path / "ledger.txt")))
    env = base_env() | settings_env(settings)
    worker = processes.start("worker", [*NECTAR, "worker", "--workers", "1", "--clock"], env, settings.data_dir.parent)
    service = closed_at_end(Nectar(settings))
    assert _done(service, 1) == RunState.DONE
    marker, gate = tmp_path / "executed-by", tmp_path / "gate"
    write_chain("probes/gated_chain", GATED.format(marker=str(marker), gate=str(gate)))
    try:
        wait_until(lambda: marker.exists() and marker.read_text().endswith("\n"))  # a loop's pass found it
        assert _done(service, 2) == RunState.DONE
        executed = marker.read_text().split()
    finally:
        gate.touch()
    assert str(worker.pid) not in executed, executed
