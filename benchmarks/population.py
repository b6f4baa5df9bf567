"""Fill a run registry, a local store and luigid with finished runs of ProbeTask, in bulk."""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from luigi.task import task_id_str

from benchmarks.harness import CHAIN, CHAIN_TYPE, MODULE, NAMESPACE
from nectar.keys import TargetKey
from nectar.registry import Run, RunState, Step
from nectar.registry.sqlite import SQLiteRunStore

TASK = "ProbeTask"
FAMILY = f"{NAMESPACE}.{TASK}"
BATCH = 5000
#: the columns of the registry's ``runs`` table: the fields of a Run, by the same names


@dataclasses.dataclass(frozen=True)
class Probe:
    """ProbeTask(n): its parameters, luigi task_id and target key, computed without instantiating it."""

    n: int

    @property
    def params(self) -> dict[str, str]:
        return {"n": str(self.n)}

    @property
    def task_id(self) -> str:
        return str(task_id_str(FAMILY, self.params))

    @property
    def key(self) -> TargetKey:
        return TargetKey.for_task(CHAIN_TYPE, CHAIN, TASK, self.params)


def finished_run(probe: Probe, now: float) -> Run:
    run = Run.new(probe.key.path, CHAIN_TYPE, CHAIN, TASK, probe.params, probe.task_id)
    return dataclasses.replace(
        run, state=RunState.DONE, started_at=now, finished_at=now, heartbeat_at=now, attempt=1, worker="bench:0"
    )


def fill_registry(path: Path, probes: range) -> None:
    """One DONE run (and its one DONE step) per probe, written through the registry's own connection, which is closed
    after: what it wrote is copied from the WAL into the file (a checkpoint), as a service's writers do as they go.
    Left open, the whole registry stayed in the WAL while the benchmark ran (no writer of the service checkpoints
    runs it did not write), and each lookup read its pages from there (~4.5 ``pread`` of the WAL a served lookup)."""
    registry = SQLiteRunStore(path)
    now = time.time()
    try:
        for start in range(probes.start, probes.stop, BATCH):  # one transaction per batch
            runs = [finished_run(Probe(n), now) for n in range(start, min(start + BATCH, probes.stop))]
            steps = [Step(run.id, run.task_id, TASK, run.key, "DONE", executed=True, updated_at=now) for run in runs]
            registry.import_runs(runs, steps)
    finally:
        registry.close()


def fill_store(root: Path, probes: range) -> None:
    """ProbeTask(n)'s out.txt in the local store, for every probe."""
    for n in probes:
        path = root / Probe(n).key.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("probe\n")


def fill_luigid(scheduler_url: str, probes: range, connections: int = 4) -> None:
    """Tell luigid that ProbeTask(n) is DONE for every probe, through its add_task RPC on a few connections."""
    parts = urlsplit(scheduler_url)
    errors: list[str] = []

    def send(ns: range) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            for n in ns:
                probe = Probe(n)
                data: dict[str, Any] = {"task_id": probe.task_id, "status": "DONE", "family": FAMILY}
                data |= {"module": MODULE, "params": probe.params, "worker": "bench-fill", "deps": []}
                body = urlencode({"data": json.dumps(data)})
                conn.request("POST", "/api/add_task", body, {"Content-Type": "application/x-www-form-urlencoded"})
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(f"add_task {probe.task_id}: {answer.status}")
                    return
        finally:
            conn.close()

    threads = [
        threading.Thread(target=send, args=(range(probes.start + i, probes.stop, connections),), daemon=True)
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"luigid refused tasks: {errors[:3]}")


def populate(registry: Path, store: Path, scheduler_url: str, probes: range) -> float:
    """All three for ``probes``; answers the seconds it took."""
    began = time.monotonic()
    fill_registry(registry, probes)
    fill_store(store, probes)
    fill_luigid(scheduler_url, probes)
    return time.monotonic() - began
