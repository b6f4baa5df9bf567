"""``nectar serve`` starts the API and luigid at once, the API first, and the workers once both answer: the workers'
start does not take the CPU the API's start needs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
from contextlib import closing
from pathlib import Path

import pytest

from harness import (
    NECTAR,
    PortTaken,
    answers,
    base_env,
    children,
    cmdline,
    connected_to,
    exited_starting,
    lifeline_env,
    listens,
    on_free_ports,
    waitfor,
)
from nectar.config import OPENED, Settings
from nectar.errors import RegistryTooNew
from nectar.registry.sqlite import SCHEMA_VERSION, SQLiteRunStore
from nectar.supervisor import refuse_a_newer_registry
from tests.conftest import free_port
from tests.nectar.test_cli import nectar

#: seconds that only fail a hung test
PATIENCE = 60.0
#: a chain whose import waits for the gate file: the API's master loads the chains before it forks a worker, so the
#: API does not answer until the test opens the gate; each process held there says so (:func:`held_at`). Held in the
#: process that keeps it, not in the probe child that executes it first (its output goes to ``os.devnull``): a file
#: whose import does not end in the probe is not executed by the master (``ChainCatalog.refresh_ahead``)
GATED_CHAIN = """
import os
import time

from nectar import NectarTask

gate = os.environ["GATE_FILE"]
open(f"{gate}.{os.getpid()}", "w").close()
while os.readlink('/proc/self/fd/1') != os.devnull and not os.path.exists(gate):
    time.sleep(0.02)


class GatedTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write("gated\\n")
"""


def held_at(gate: Path, pid: int) -> bool:
    """Whether process ``pid`` is held at :data:`GATED_CHAIN`'s gate (or was, and went on once it opened)."""
    return Path(f"{gate}.{pid}").exists()


def workers_of(pid: int) -> list[int]:
    return [child for child in children(pid) if " worker " in cmdline(child)]


def started(pid: int) -> tuple[int, int]:
    """When ``pid`` started (clock ticks since boot, from its ``stat``), then its pid (issued in order) for a tie."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[19]), pid


def serve_gated(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """``nectar serve`` of :data:`GATED_CHAIN`, its API held while the gate is closed: the supervisor, its API's port,
    luigid's port and the gate file."""
    chains, gate = tmp_path / "chains", tmp_path / "gate"
    (chains / "gated").mkdir(parents=True)
    (chains / "gated" / "gated_chain.py").write_text(GATED_CHAIN)
    env = base_env() | {"GATE_FILE": str(gate), "ENV": "local"} | lifeline_env()  # dies with this process
    log = tmp_path / "serve.log"

    def start(port: int, scheduler_port: int) -> tuple[subprocess.Popen[bytes], int, int]:
        """``serve`` on these ports, once its API and luigid listen there (the API answers once the gate opens);
        :func:`harness.on_free_ports` starts it again on two others where one was taken since its pick."""
        argv = [*NECTAR, "serve", "--port", str(port), "--scheduler-port", str(scheduler_port)]
        argv += ["--data-dir", str(tmp_path / "data"), "--chains-dir", str(chains)]
        with open(log, "wb") as out:
            serve = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=out)

        def listening() -> bool:
            if serve.poll() is not None:
                raise exited_starting(f"nectar serve exited with code {serve.returncode}", log.read_text())
            mine = [listens(serve.pid, each) for each in (port, scheduler_port)]
            if False in mine:  # another server on one of them: its parts die with it (lifeline)
                serve.kill()
                serve.wait()
                raise PortTaken(f"another process listens on {port} or {scheduler_port}")
            return all(mine)

        waitfor(listening, PATIENCE, "nectar serve's API and luigid to listen")
        return serve, port, scheduler_port

    return (*on_free_ports(start), gate)


def stop(serve: subprocess.Popen[bytes], gate: Path) -> None:
    gate.touch()
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()


def test_the_workers_start_once_the_api_answers(tmp_path: Path) -> None:
    serve, port, scheduler_port, gate = serve_gated(tmp_path)
    try:
        # the supervisor asks the API, which cannot answer while its master imports the gated chain
        waitfor(lambda: serve.poll() is None and connected_to(serve.pid, port), PATIENCE, "serve to ask the API")
        luigid = f"http://127.0.0.1:{scheduler_port}/api/worker_list"
        waitfor(lambda: answers(luigid) is not None, PATIENCE, "luigid to answer")
        assert workers_of(serve.pid) == [], "the workers were started before the API answered"

        gate.touch()
        waitfor(lambda: answers(f"http://127.0.0.1:{port}/api/chains", timeout=PATIENCE) == 200, PATIENCE, "the API")
        waitfor(lambda: workers_of(serve.pid), PATIENCE, "the workers to start")
    finally:
        stop(serve, gate)
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()


def test_a_stop_asked_while_the_api_starts_stops_serve_then_without_starting_the_workers(tmp_path: Path) -> None:
    """SIGTERM while ``serve`` waits for its API to answer (its master held at the gate) stops it then, exit 0: it
    waited on until the API answered (here never: after 30 s it exited 1), then started the workers and said it was
    up, to stop them at once. The gate opens once serve stops its parts: the API's master, its handlers set, then
    takes its SIGTERM."""
    serve, port, _, gate = serve_gated(tmp_path)
    log = tmp_path / "serve.log"
    try:
        waitfor(lambda: serve.poll() is None and connected_to(serve.pid, port), PATIENCE, "serve to ask the API")
        [api] = [pid for pid in children(serve.pid) if "gunicorn" in cmdline(pid)]
        waitfor(lambda: held_at(gate, api), PATIENCE, "the API's master held at the gate")

        serve.send_signal(signal.SIGTERM)

        waitfor(lambda: "stopping " in log.read_text() or serve.poll() is not None, PATIENCE, "serve to stop its parts")
        gate.touch()
        assert serve.wait(PATIENCE) == 0, log.read_text()
    finally:
        stop(serve, gate)
    said = log.read_text()
    stopping = [line for line in said.splitlines() if "stopping " in line]
    assert "Datanectar is up" not in said and stopping and "workers" not in stopping[0], said


def test_the_api_is_started_before_luigid(tmp_path: Path) -> None:
    """The API's start (gunicorn's master loading the app) is the cold start's longest path: it is started first,
    luigid beside it."""
    serve, port, scheduler_port, gate = serve_gated(tmp_path)
    try:
        waitfor(lambda: serve.poll() is None and connected_to(serve.pid, port), PATIENCE, "serve to ask the API")
        luigid = f"http://127.0.0.1:{scheduler_port}/api/worker_list"
        waitfor(lambda: answers(luigid) is not None, PATIENCE, "luigid to answer")
        parts = {("api" if "gunicorn" in cmdline(pid) else "luigid"): pid for pid in children(serve.pid)}
        assert set(parts) == {"api", "luigid"}, {pid: cmdline(pid) for pid in children(serve.pid)}
        assert started(parts["api"]) < started(parts["luigid"]), "luigid was started before the API"
    finally:
        stop(serve, gate)
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()


def test_serve_facing_a_registry_a_newer_release_upgraded_refuses_in_one_line_before_it_is_up(
    settings: Settings,
) -> None:
    """Not "Datanectar is up" and then its workers exiting with code 1: the refusal, one line, exit 2."""
    path = settings.data_dir / "runs.sqlite3"
    SQLiteRunStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    ports = {"NECTAR_PORT": str(free_port()), "NECTAR_SCHEDULER_PORT": str(free_port())}
    result = nectar(settings, "serve", **ports)  # its timeout only fails a hung test
    assert result.returncode == 2, result.stdout + result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith("nectar: ")]
    assert refusals == [
        f"nectar: the run registry {path} has schema version {SCHEMA_VERSION + 1}, newer than this release's "
        f"{SCHEMA_VERSION}: run the newer release (or restore the registry from before the upgrade)"
    ], result.stderr
    assert "is up" not in result.stderr and "exited with code" not in result.stderr, result.stderr
    # the API's master, which opens the registry before it forks, says why in one line too, not in a traceback
    assert "Traceback" not in result.stderr, result.stderr


#: a ``sitecustomize`` that writes a line for each connection a process opens to a run registry: its pid, its parent's
#: and its arguments (a forked process keeps its parent's)
RECORD_OPENS = """
import os, sys

def _opened(event, args):
    if event == "sqlite3.connect" and os.fsdecode(args[0]).endswith("runs.sqlite3"):
        with open(os.environ["REGISTRY_OPENS"], "a") as ledger:
            ledger.write(f"{os.getpid()} {os.getppid()} {' '.join(sys.argv)}\\n")

sys.addaudithook(_opened)
"""


def test_serve_opens_its_sqlite_registry_once_before_it_is_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's master opens the registry as it loads the app (its workers' schema checked once, there) and tells
    the supervisor how it went; the supervisor no longer opens it again in a process of its own before it says up
    (0.2-0.4 s of CPU at each start). A newer release's registry is still refused before up (the test above)."""
    hooks, ledger = tmp_path / "hooks", tmp_path / "opens"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORD_OPENS)
    monkeypatch.setenv("REGISTRY_OPENS", str(ledger))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])))
    serve, _, _, gate = serve_gated(tmp_path)
    try:
        gate.touch()
        waitfor(lambda: "is up" in (tmp_path / "serve.log").read_text(), PATIENCE, "nectar serve to be up")
    finally:
        stop(serve, gate)
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()
    opens = [line.split(" ", 2) for line in ledger.read_text().splitlines()]
    by_master = [pid for pid, parent, argv in opens if int(parent) == serve.pid and "gunicorn" in argv]
    by_supervisor = [pid for pid, _, argv in opens if " serve " in f"{argv} "]  # itself, or a process it forked
    assert by_master, opens
    assert by_supervisor == [], opens


def test_without_the_masters_word_the_supervisor_opens_the_registry_itself(settings: Settings) -> None:
    """A master that opened no registry (PostgreSQL's is each worker's; or it met another error) closes the pipe
    saying nothing: the supervisor opens the registry in a process of its own, as before, and still refuses a newer
    release's."""
    path = settings.data_dir / "runs.sqlite3"
    SQLiteRunStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    reader, writer = os.pipe()
    os.close(writer)  # the master's close, nothing written
    with pytest.raises(RegistryTooNew, match="newer than this release's"):
        refuse_a_newer_registry(settings, reader)


def test_the_masters_refusal_is_the_supervisors_without_a_second_look(settings: Settings) -> None:
    """A master that met a newer release's registry as it opened it says so on the pipe: the supervisor refuses with
    the master's own words (no process of its own forked to open the registry again, which here would find nothing
    to refuse: the registry is this release's)."""
    SQLiteRunStore(settings.data_dir / "runs.sqlite3").close()
    reader, writer = os.pipe()
    os.write(writer, b"refused:the run registry's schema 99 is newer than this release's")
    os.close(writer)
    with pytest.raises(RegistryTooNew, match="^the run registry's schema 99 is newer than this release's$"):
        refuse_a_newer_registry(settings, reader)


def test_a_word_whose_pipe_another_process_holds_open_delays_the_start_by_the_patience_alone(
    settings: Settings,
) -> None:
    """The master wrote its word, but a copy of the pipe's writing end lives on (a process started as the master
    loaded the app, which inherited it): the supervisor, which read to the pipe's end, waited for ever. It gives up
    after its patience and opens the registry itself (this release's here: nothing to refuse)."""
    SQLiteRunStore(settings.data_dir / "runs.sqlite3").close()
    reader, writer = os.pipe()
    os.write(writer, OPENED)
    done, released = threading.Event(), []

    def release_a_hung_test() -> None:  # a deadline for a hung test only: the call below returns without it
        if not done.wait(60):
            released.append(True)
            os.close(writer)

    watcher = threading.Thread(target=release_a_hung_test)
    watcher.start()
    try:
        refuse_a_newer_registry(settings, reader, patience=0.5)
    finally:
        done.set()
        watcher.join()
    assert not released, "the supervisor waited for the pipe's end until the test closed it"
    os.close(writer)
