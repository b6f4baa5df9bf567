"""The API's memory under gunicorn: its metrics folder does not outlive it, and /metrics scrapes over a big registry
do not grow a worker by a page cache and a malloc arena per thread."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from pathlib import Path

from benchmarks.harness import rss_kb
from benchmarks.population import fill_registry
from harness import Processes, children, lifeline_env
from nectar.config import Settings
from nectar.gunicorn_ext import METRICS_PREFIX, make_metrics_folder, remove_orphan_metrics

#: the soak's registry: each /metrics scrape reads every run
RUNS = 20_000
#: gunicorn's threads per worker (nectar.gunicorn_conf's default)
THREADS = 8
#: kB a worker may grow by once every thread has scraped, after its first scrape: less than SQLite's default page
#: cache (2,000 KiB) for each thread alone, which the old connections filled (the worker grew ~28 MB with the malloc
#: arena each thread kept); bounded caches and two arenas grow it by ~4 MB here, ~10 MB on a CI machine
GROWTH_KB = THREADS * 2000


def metrics_folders(tmp: Path, pid: int) -> list[Path]:
    return sorted(path for path in tmp.glob(f"{METRICS_PREFIX}{pid}-*") if path.is_dir())


def test_the_metrics_folder_goes_with_its_gunicorn_even_a_killed_one(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    killed = processes.nectar_api(settings, env={"TMPDIR": str(tmp)}).proc
    assert len(metrics_folders(tmp, killed.pid)) == 1
    processes.kill(killed)  # SIGKILL: its on_exit never runs
    assert len(metrics_folders(tmp, killed.pid)) == 1

    stopped = processes.nectar_api(settings, env={"TMPDIR": str(tmp)}).proc

    assert metrics_folders(tmp, killed.pid) == [], "the next gunicorn left a killed one's metrics folder"
    assert len(metrics_folders(tmp, stopped.pid)) == 1
    processes.stop(stopped)  # SIGTERM: its on_exit removes its own
    assert list(tmp.glob(f"{METRICS_PREFIX}*")) == [], "a metrics folder or its lock outlived its gunicorn"


def test_a_live_gunicorn_keeps_its_metrics_folder_even_where_its_pid_is_unseen(tmp_path: Path) -> None:
    """Another gunicorn sharing the temporary folder may live in a pid namespace of its own (a container), or its
    pid may be reused: its folder goes when its lock is free, not when its pid is no process here (a CI run's API
    failed to start with ``No such file or directory: '/tmp/nectar-metrics-9334-...'``)."""
    unseen = dead_pid()
    folder, lock = make_metrics_folder(str(tmp_path), pid=unseen)

    assert remove_orphan_metrics(str(tmp_path)) == []
    assert Path(folder).is_dir(), "a live gunicorn's metrics folder was removed because its pid is no process here"

    os.close(lock)  # its gunicorn is gone (SIGKILL)
    assert remove_orphan_metrics(str(tmp_path)) == [folder]
    assert list(tmp_path.iterdir()) == []


def dead_pid() -> int:
    """The pid of a process that has exited (its pid is no process, as a pid of another namespace is not)."""
    child = subprocess.Popen([sys.executable, "-c", ""], env={**os.environ, **lifeline_env()})
    child.wait()
    return child.pid


def scrape(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", "/metrics")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200
    finally:
        connection.close()


def scrape_at_once(port: int, count: int) -> None:
    """``count`` scrapes on as many connections at once: gunicorn hands them to as many of its threads."""
    threads = [threading.Thread(target=scrape, args=(port,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_scrapes_from_every_thread_grow_a_worker_by_little(settings: Settings, processes: Processes) -> None:
    fill_registry(settings.registry_path, range(RUNS))
    api = processes.nectar_api(settings, threads=THREADS)
    (worker,) = children(api.proc.pid)
    scrape(api.port)  # one thread, one connection to the registry, everything the first scrape loads
    warm = rss_kb(worker)

    for _ in range(5):
        scrape_at_once(api.port, THREADS)

    grown = rss_kb(worker) - warm
    assert grown <= GROWTH_KB, f"the worker grew by {grown} kB once {THREADS} threads had scraped {RUNS} runs"


def test_fewer_malloc_arenas_starts_no_program() -> None:
    """The gunicorn master sets them at each start: looking glibc's mallopt up ran ``ldconfig -p`` there."""
    probe = (
        "import sys\n"
        "started = []\n"
        "sys.addaudithook(lambda event, args: event in ('subprocess.Popen', 'os.posix_spawn', 'os.exec', 'os.fork')"
        " and started.append(event))\n"
        "from nectar.gunicorn_ext import few_malloc_arenas\n"
        "print(few_malloc_arenas(), started)\n"
    )
    said = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert said == "True []"
