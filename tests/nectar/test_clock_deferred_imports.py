"""``nectar clock`` imports luigi's and nectar's modules as ``nectar worker --clock`` does (``service_deferral`` in
:mod:`nectar.cli.local`): without luigi.rpc's ``requests``, luigi.parameter's ``jsonschema`` or tenacity's tornado."""

from __future__ import annotations

from harness import NECTAR, Processes, base_env, settings_env, wait_until
from nectar.config import Settings
from nectar.deferred_imports import WORKER_ABSENT, WORKER_UNUSED
from tests.nectar.test_deferred_imports import loaded


def test_a_clock_loads_neither_requests_nor_jsonschema_nor_tornado(settings: Settings, processes: Processes) -> None:
    """Its fires make their tasks through the catalog and its triggers list through the store (boto3's own HTTP, not
    requests); no chain of the test's imports them or checks a parameter by a schema. Before, ``nectar clock`` imported
    them all as it started (~0.26 s of CPU at each start, each clock of the suite), where the worker's clock did not."""
    env = base_env() | settings_env(settings)
    proc = processes.start("clock", [*NECTAR, "clock"], env, settings.data_dir.parent)
    log = processes.log_of[proc.pid]
    wait_until(lambda: "firing schedules" in log.read_text(errors="replace") or proc.poll() is not None)
    assert proc.poll() is None, log.read_text(errors="replace")

    assert loaded(proc.pid, (*WORKER_UNUSED, *WORKER_ABSENT)) == []
