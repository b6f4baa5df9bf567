"""Fill a run registry, a local store and luigid with finished runs of ProbeTask, in bulk."""

from __future__ import annotations

import dataclasses
import http.client
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from luigi.task import task_id_str

from benchmarks.harness import CHAIN, CHAIN_TYPE, MODULE, NAMESPACE
from nectar.keys import TargetKey
from nectar.runs import Run, RunState
from nectar.sqlruns import SQLiteRunStore

TASK = "ProbeTask"
FAMILY = f"{NAMESPACE}.{TASK}"
BATCH = 5000
#: the columns of the registry's ``runs`` table: the fields of a Run, by the same names
RUN_COLUMNS = [field.name for field in dataclasses.fields(Run)]


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
    """One DONE run (and its one DONE step) per probe, written straight into the registry's SQLite file (the
    registry made its tables; it has no bulk insert of its own)."""
    SQLiteRunStore(path)
    now = time.time()
    insert_run = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
    insert_step = "INSERT INTO steps (run_id, task_id, task, key, state, executed, error, updated_at, seq) "
    insert_step += "VALUES (?, ?, ?, ?, 'DONE', 1, NULL, ?, 0)"
    db = sqlite3.connect(path, timeout=30)
    try:
        for start in range(probes.start, probes.stop, BATCH):
            runs = [finished_run(Probe(n), now) for n in range(start, min(start + BATCH, probes.stop))]
            rows = []
            for run in runs:
                values = [getattr(run, name) for name in RUN_COLUMNS]
                values[RUN_COLUMNS.index("params")] = json.dumps(dict(run.params))
                values[RUN_COLUMNS.index("state")] = run.state.value
                rows.append(values)
            with db:  # one transaction per batch
                db.executemany(insert_run, rows)
                db.executemany(insert_step, [(run.id, run.task_id, TASK, run.key, now) for run in runs])
    finally:
        db.close()


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
