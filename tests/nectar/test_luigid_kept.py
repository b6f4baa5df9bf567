"""luigid keeps at most ``[nectar_scheduler] finished_tasks_kept`` finished tasks (nectar.luigi_internals'
``_forget_oldest_finished``): at each prune the oldest finished tasks that no live worker holds are forgotten first,
so its memory is bounded by a count, not by a day of runs (``remove_delay``)."""

from __future__ import annotations

import configparser
from pathlib import Path

import luigi.configuration
import pytest

from benchmarks.harness import rss_kb
from harness import LUIGI_CFG, Processes, waitfor
from nectar.luigi_internals import FINISHED_TASKS_KEPT, finished_tasks_kept
from tests.nectar.test_luigid_state import start
from tests.nectar.test_step_retry_count import start_refused

#: a run's worker that stays alive through the test (pinging is not needed: the test's luigi.cfg gives a worker an
#: hour before luigid drops it), holding the steps it added
LIVE = "Worker(salt=live, workers=1, host=h, username=u, pid=1)"
#: a worker that holds nothing it adds (luigi's assistant: never a stakeholder), as a run's worker once it has left
LEFT = "Worker(salt=left, workers=1, host=h, username=u, pid=2)"


def config_keeping(tmp_path: Path, kept: int, disconnect_delay: int = 3600) -> Path:
    """The project's luigi.cfg keeping ``kept`` finished tasks, a worker dropped ``disconnect_delay`` seconds (an hour)
    after its last call."""
    config = configparser.ConfigParser()
    config.read(LUIGI_CFG)
    config["nectar_scheduler"]["finished_tasks_kept"] = str(kept)
    config["scheduler"]["worker_disconnect_delay"] = str(disconnect_delay)
    path = tmp_path / "luigi.cfg"
    with path.open("w") as file:
        config.write(file)
    return path


def test_luigid_forgets_the_oldest_finished_tasks_beyond_the_count_it_keeps(
    processes: Processes, tmp_path: Path
) -> None:
    """A luigid keeping 4 finished tasks, given 8 (7 whose workers left, one a live worker holds) and a PENDING one:
    its next prune forgets the 4 oldest of those whose workers left, in the order they finished; the live worker's,
    though the oldest, the FAILED one (its failure counts yet) and the PENDING one stay; so do the 2 latest DONE."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state, config_keeping(tmp_path, 4))

    def add(task_id: str, status: str, worker: str = LEFT) -> None:
        added = {"family": "Probe", "module": "probes", "params": {"n": task_id}, "deps": [], "runnable": True}
        client.call("add_task", worker=worker, status=status, task_id=task_id, assistant=worker == LEFT, **added)

    add("Probe_live", "DONE", LIVE)  # the oldest finished, held by a live worker
    finished = ["Probe_0", "Probe_1", "Probe_failed", "Probe_2", "Probe_3", "Probe_4", "Probe_5"]
    for task_id in finished:
        add(task_id, "FAILED" if task_id == "Probe_failed" else "DONE")
    add("Probe_pending", "PENDING")

    def listed(status: str) -> set[str]:
        return set(client.call("task_list", status=status, upstream_status=""))  # a prune first

    done, failed = listed("DONE"), listed("FAILED")
    assert done == {"Probe_live", "Probe_4", "Probe_5"}  # Probe_0, _1, _2 and _3 forgotten
    assert failed == {"Probe_failed"}  # its failure counts within luigi's disable_window: a retry's would disable it
    assert listed("PENDING") == {"Probe_pending"}
    processes.stop(proc)
    said = b"".join(log.read_bytes() for log in processes.logs.glob("luigid-*.log"))
    assert b"UnconsumedParameterWarning" not in said  # the setting is ours, in a section of ours, not luigi's


def test_the_count_kept_is_read_from_luigis_configuration(tmp_path: Path) -> None:
    """``finished_tasks_kept`` unset is the default; a whole number is taken; another value names the setting."""
    config = luigi.configuration.LuigiConfigParser()
    assert finished_tasks_kept(config) == FINISHED_TASKS_KEPT
    config.add_section("nectar_scheduler")
    config.set("nectar_scheduler", "finished_tasks_kept", "25")
    assert finished_tasks_kept(config) == 25
    for bad in ("-1", "ten", "1.5", "²"):
        config.set("nectar_scheduler", "finished_tasks_kept", bad)
        with pytest.raises(ValueError, match=r"\[nectar_scheduler\] finished_tasks_kept must be a whole number"):
            finished_tasks_kept(config)


@pytest.mark.parametrize("command", ["serve", "scheduler"])
def test_a_finished_tasks_kept_luigid_refuses_stops_the_start_in_one_line(tmp_path: Path, command: str) -> None:
    """``serve`` and ``scheduler`` refuse a ``finished_tasks_kept`` that is no whole number from 0 in one line naming
    it, before anything starts (before, luigid started and exited on it, with a traceback)."""
    config = tmp_path / "luigi.cfg"
    config.write_text("[nectar_scheduler]\nfinished_tasks_kept = -5\n")

    said = start_refused(tmp_path, command, config)

    assert said == f"nectar: {config} [nectar_scheduler] finished_tasks_kept must be a whole number from 0, not '-5'\n"


#: tasks a live worker adds in the memory test: ~110 MB of luigid's RSS, forgotten together once it has left
MANY = 20_000


def test_luigid_gives_back_the_memory_of_the_tasks_it_forgot(processes: Processes, tmp_path: Path) -> None:
    """A luigid keeping 100 finished tasks, given 20,000 DONE tasks by a worker that then leaves (its tasks kept until
    luigid drops it): once it has forgotten all but 100 of them, it hands back at least a quarter of what they grew
    its RSS by (measured: 36 -> 128 -> 87 MB). Before, it grew on (36 -> 128 -> 143 MB): a forgotten task's
    ``workers`` sentinel, a list that refers to itself, outlived it until the cyclic collector's next full pass,
    keeping the allocator's pools it sat in, and the blocks from the C allocator (a task's ``__dict__``, its
    ``failures`` deque) stayed in the pages between those still used."""
    state = tmp_path / "luigid"
    state.mkdir()
    proc, client = start(processes, state, config_keeping(tmp_path, 100, disconnect_delay=1))
    before = rss_kb(proc.pid)
    answers = []
    for n in range(MANY):
        added = {"family": "Probe", "module": "probes", "params": {"n": str(n)}, "deps": [], "runnable": True}
        answers.append(client.ask("add_task", worker=LIVE, status="DONE", task_id=f"Probe_{n}", **added))
    for answer in answers:
        answer()
    peak = rss_kb(proc.pid)
    assert len(client.call("task_list", status="DONE", upstream_status="")) == MANY  # its worker holds them yet

    # luigid drops the worker at a prune a second after its last call
    waitfor(lambda: not client.call("worker_list"), 120, "luigid to drop the worker")
    assert len(client.call("task_list", status="DONE", upstream_status="")) == 100
    after = rss_kb(proc.pid)
    assert peak - after > (peak - before) // 4, (before, peak, after)
