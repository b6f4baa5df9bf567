"""luigid's state saved whole or not at all (nectar.luigi_internals.luigid_saves_whole): a save cut midway leaves
the last whole state for the next luigid, not a cut file it drops ("Starting from empty state")."""

from __future__ import annotations

import os
import pickle
import resource
import stat
import subprocess
from pathlib import Path

from harness import LUIGI_CFG, Processes
from harness.processes import base_env
from nectar.luigid import SECRET_ENV, SchedulerClient
from nectar.supervisor import GUARDED_LUIGID

SECRET = "a-scheduler-secret-for-the-state-test"
WORKER = "Worker(salt=state, workers=1, host=h, username=u, pid=1)"


def start(
    processes: Processes, state: Path, config: Path = LUIGI_CFG
) -> tuple[subprocess.Popen[bytes], SchedulerClient]:
    """``nectar serve``'s luigid (behind its guard, its prelude) keeping its state in ``state``, configured by
    ``config``, and a client of it."""
    env = {**base_env(), "LUIGI_CONFIG_PATH": str(config), SECRET_ENV: SECRET, "NECTAR_DATA_DIR": str(state)}

    def launch(port: int) -> subprocess.Popen[bytes]:
        listen = ["--address", "127.0.0.1", "--port", str(port), "--state-path", str(state / "state.pickle")]
        return processes.start("luigid", [*GUARDED_LUIGID, *listen, "--logdir", str(state)], env, state)

    served = processes.serve("luigid", None, False, launch, "/static/visualiser/index.html")
    return served.proc, SchedulerClient(f"http://127.0.0.1:{served.port}", 60, SECRET)


def add(client: SchedulerClient, task_id: str) -> None:
    added = {"family": "Probe", "module": "probes", "params": {"n": task_id}, "deps": [], "runnable": True}
    client.call("add_task", worker=WORKER, status="PENDING", task_id=task_id, **added)


def saved_tasks(state: Path) -> set[str]:
    """The ids of the tasks in luigid's state file (raises if it is not a whole pickle)."""
    with open(state / "state.pickle", "rb") as saved:
        tasks = pickle.load(saved)[0]  # luigi's SimpleTaskState.get_state: tasks, workers, batchers
    return set(tasks)


def test_a_save_cut_midway_keeps_the_last_whole_state(processes: Processes, tmp_path: Path) -> None:
    """luigid saves as it stops; the kernel cuts its second save midway (the file size limit, RLIMIT_FSIZE, below the
    size of the state: writes past it fail, EFBIG, as on a full disk; a kill mid-save cuts it likewise). The state
    file still holds the first save, whole, and the next luigid starts from it. What a save cut by a kill left is
    removed by the next whole save."""
    state = tmp_path / "luigid"
    state.mkdir()
    killed = state / ".state.pickle.cut0by0a0kill.saving"  # what a luigid killed mid-save (SIGKILL) left
    killed.write_bytes(b"\x80\x04\x95")
    proc, client = start(processes, state)
    add(client, "Probe_first")
    processes.stop(proc)
    assert proc.returncode == 0
    assert saved_tasks(state) == {"Probe_first"}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((state / "state.pickle").stat().st_mode) == 0o666 & ~umask  # as luigi's open made it
    assert not killed.exists()  # removed by the next whole save

    proc, client = start(processes, state)
    assert "Probe_first" in client.call("task_list", status="PENDING", upstream_status="")
    for n in range(200):  # a state well past the limit below, so the save is cut inside the pickle
        add(client, f"Probe_second_{n}")
    limit = (state / "state.pickle").stat().st_size // 2
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    processes.stop(proc)

    assert saved_tasks(state) == {"Probe_first"}  # the last whole state (was a cut file: UnpicklingError)
    assert not [path.name for path in state.iterdir() if path.name.endswith(".saving")]  # the cut save gone
    proc, client = start(processes, state)
    assert "Probe_first" in client.call("task_list", status="PENDING", upstream_status="")
    processes.stop(proc)
    said = b"".join(log.read_bytes() for log in processes.logs.glob("luigid-*.log"))
    assert b"Starting from empty state" not in said
