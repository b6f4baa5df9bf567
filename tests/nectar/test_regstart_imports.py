"""A process that only opens a registry imports no luigi (~0.4 s of CPU of its ~0.6 s start, CONTRIBUTING "(round 69,
regstart)"): ``import nectar.registry``, a registry opened and its schedules and triggers read (each row's definition
checked again, a preload's and a trigger's prefix parsed), and ``nectar cancel``, which parses its command without
the role and client commands' flags (nor their modules). One fresh interpreter for them all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.suitenectarB_runs import GUARD, REPOSITORY

#: each step, then the luigi modules imported so far (a name of luigi's package), as one JSON line per step
CHILD = """
import json, sys, time

def luigi_modules(step):
    heavy = [m for m in sys.modules if m == "luigi" or m.startswith("luigi.") or m in ROLES_AND_CLIENTS]
    print(json.dumps([step, sorted(heavy)]), flush=True)

#: what only nectar serve, api, scheduler (their flags) and nectar submit, download use
ROLES_AND_CLIENTS = {"nectar.supervisor", "nectar.cli.remote"}

import nectar.registry
luigi_modules("import nectar.registry")

from nectar.config import Settings
from nectar.registry import Run, RunState, open_run_store
from nectar.schedules.model import ScheduleRecord, ScheduleSpec
from nectar.triggers.model import TriggerRecord, TriggerSpec

settings = Settings.from_env(chains_dir=sys.argv[1], data_dir=sys.argv[2])
runs = open_run_store(settings)
now = time.time()
preload = {"strategy": "pending", "area": sys.argv[2] + "/in/{date}/", "glob": "*.csv"}
spec = ScheduleSpec.from_definition({"task": "t/c/A", "interval_s": 60, "preload": preload})
assert runs.add_schedule(ScheduleRecord("s1", "api", spec, 1, False, now, now, now))
watch = TriggerSpec.from_definition({"task": "t/c/A", "prefix": "s3://bucket/in/", "glob": "*.csv", "param": "n"})
assert runs.add_trigger(TriggerRecord("t1", "api", watch, 1, False, "", now, now))
run, _ = runs.submit(Run.new("chains/t/c/A/0123456789abcdef0123456789abcdef/out.txt", "t", "c", "A", {}, "A_1"))
runs.close()
luigi_modules("a registry opened, a schedule and a trigger added, a run queued")

runs = open_run_store(settings)
assert [s.spec.preload for s in runs.schedules()] == [spec.preload] and len(runs.triggers()) == 1
runs.close()
luigi_modules("the schedules and triggers read")

from nectar.cli import main
assert main(["cancel", run.id, "--chains-dir", sys.argv[1], "--data-dir", sys.argv[2]]) == 0
runs = open_run_store(settings)
assert runs.get(run.id).state is RunState.CANCELLED
runs.close()
luigi_modules("nectar cancel")
"""


def test_a_process_that_only_opens_a_registry_imports_no_luigi_nor_the_roles_flags(tmp_path: Path) -> None:
    chains, data = tmp_path / "chains", tmp_path / "data"
    chains.mkdir()
    data.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(chains), str(data)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert done.returncode == 0, done.stderr
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]  # and cancel's line
    assert [step for step, _ in steps] == [
        "import nectar.registry",
        "a registry opened, a schedule and a trigger added, a run queued",
        "the schedules and triggers read",
        "nectar cancel",
    ]
    assert {step: modules for step, modules in steps if modules} == {}
