"""End to end: ``nectar serve`` started as a subprocess and driven over HTTP like the README tour."""

from __future__ import annotations

import errno
import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import (
    PortTaken,
    answers,
    bound_to_a_free_port,
    exited_starting,
    lifeline_env,
    on_a_free_port,
    on_free_ports,
)
from nectar import ports, supervisor
from nectar.config import Settings
from nectar.metrics import DURATION_BUCKETS
from nectar.registry.sqlite import SQLiteRunStore
from nectar.supervisor import Part, wait_ready
from tests.clock import Clock
from tests.conftest import NECTAR, REPO, free_port, settings_env, wait_until
from tests.faults.conftest import alive, children, cmdline, descendants, links_checked, send, waitfor
from tests.helpers.registries import closed_at_end
from tests.helpers.suitecli_inprocess import Ended, nectar_in_process
from tests.nectar.test_supervisor_start import GATED_CHAIN, held_at

HELLO = "testchains/hello_luigiworld_chain"


@dataclass
class Served:
    api: str
    scheduler: str
    proc: subprocess.Popen[bytes]
    cwd: Path
    env: dict[str, str]
    log: Path

    @property
    def ports(self) -> tuple[int, int]:
        """The API's and luigid's."""
        return int(self.api.rpartition(":")[2]), int(self.scheduler.rpartition(":")[2])


def _serve(tmp_path: Path, extra_env: dict[str, str], headers: dict[str, str] | None = None) -> Iterator[Served]:
    """``nectar serve`` on free ports (two others if one was taken since its pick: :func:`harness.on_free_ports`), up
    once ``/api/chains`` answers (to ``headers``, e.g. a token's) and it said so (it starts the workers once the API
    answers)."""
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "chains").symlink_to(REPO / "chains")
    (cwd / "configuration").symlink_to(REPO / "configuration")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NECTAR_", "AWS_"))}
    env |= {
        "ENV": "local",
        **extra_env,
    } | lifeline_env()  # serve and its parts die with this process (harness/lifeline)
    started: list[Served] = []

    def start(port: int, scheduler_port: int) -> Served:
        ports = {"NECTAR_PORT": str(port), "NECTAR_SCHEDULER_PORT": str(scheduler_port)}
        log = tmp_path / f"serve-{len(started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*NECTAR, "serve"], cwd=cwd, env=env | ports, stdout=out, stderr=out)
        served = Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{scheduler_port}", proc, cwd, env | ports, log)
        started.append(served)

        def up() -> bool:
            said = log.read_text()
            if proc.poll() is not None:  # it refused a port taken since its pick, or failed
                raise exited_starting(f"nectar serve exited with code {proc.returncode}", said)
            if "Datanectar is up" not in said:  # said once its own API and luigid answer (supervisor.wait_ready)
                return False
            try:
                return requests.get(f"{served.api}/api/chains", headers=headers, timeout=60).status_code == 200
            except requests.RequestException:  # not up yet, or a loaded machine
                return False

        wait_until(up, timeout=60)
        return served

    try:
        yield on_free_ports(start)
    finally:  # whatever happened, even a start that never answered: stop it all
        for proc in (served.proc for served in started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, {})


@pytest.fixture(scope="module")
def served_unchanged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``nectar serve`` for the module's tests that leave it as it was but for a run of their own (each refusal
    test sends what it refuses, and checks that; the README tour runs ``TestS3Task`` without parameters, a key no
    other of them asks for): a start and a stop cost ~1.1-1.5 s of CPU (luigid, gunicorn, a worker, a clock; a full
    run, round 56). A test that counts the runs (metrics), stops the serve or sets it up otherwise keeps its own."""
    yield from _serve(tmp_path_factory.mktemp("served"), {})


@pytest.fixture
def served_s3(tmp_path: Path, s3_env: dict[str, str]) -> Iterator[Served]:
    yield from _serve(tmp_path, s3_env)


def _launch_and_wait(served: Served, task: str, params: dict[str, str] | None = None) -> dict:
    answer = requests.post(f"{served.api}/api/chains/{HELLO}/{task}", params=params, timeout=60)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == 202
    status_url = body["data"]["status_url"]
    assert status_url.startswith(f"{served.api}/api/chainstatus?chain=chains/{HELLO}/{task}/")

    def done() -> dict | None:
        status = links_checked(requests.get(status_url, timeout=60)).json()
        assert status["data"]["job_status"] in {"PENDING", "RUNNING", "DONE"}, status
        return status if status["data"]["job_status"] == "DONE" else None

    return wait_until(done, timeout=60, interval=0.2)


def test_readme_tour_local(served_unchanged: Served) -> None:
    served = served_unchanged
    chains = requests.get(f"{served.api}/api/chains", timeout=60)
    assert chains.status_code == 200 and HELLO in chains.text

    status = _launch_and_wait(served, "TestS3Task")
    data = status["data"]
    resource = requests.get(data["resource_url"], timeout=60)
    assert resource.status_code == 200
    out = served.cwd / "local_targets" / data["key"]
    assert resource.content == out.read_bytes() == b"hello luigi world\n"
    assert "hello from TestS3Task" in requests.get(data["stdout_url"], timeout=60).text

    # luigid on its own port knows the task, under the chain's namespace
    search = {"data": '{"task_str": "hello_luigiworld_chain.TestS3Task"}'}
    found = requests.get(f"{served.scheduler}/api/task_search", params=search, timeout=60).json()["response"]
    assert any("TestS3Task" in task_id for tasks in found.values() for task_id in tasks)

    again = links_checked(requests.post(f"{served.api}/api/chains/{HELLO}/TestS3Task", timeout=60))
    assert again.status_code == 200 and again.json()["data"]["job_status"] == "DONE"
    assert (served.cwd / "local_targets" / data["key"]).stat().st_mtime == out.stat().st_mtime


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("post", "/api/chains/testchains/no_such_chain/TestS3Task", 404),
        ("post", f"/api/chains/{HELLO}/NoSuchTask", 404),
        ("post", f"/api/chains/{HELLO}/WithDependencyTask", 422),
        ("get", "/api/chainstatus?chain=chains/../../etc/passwd", 400),
        ("get", f"/api/chainstatus?chain=chains/{HELLO}/TestS3Task/{'0' * 32}/out.txt", 404),
    ],
)
def test_errors_over_http(served_unchanged: Served, method: str, path: str, code: int) -> None:
    answer = requests.request(method, f"{served_unchanged.api}{path}", timeout=60)
    assert answer.status_code == code
    assert answer.json()["status"] == code
    if code == 422:
        assert "aparam" in answer.json()["errors"]


def test_sigterm_stops_everything(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
    for url in (served.api, served.scheduler):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=60)


def test_readme_tour_s3(served_s3: Served, s3_env: dict[str, str]) -> None:
    status = _launch_and_wait(served_s3, "WithDependencyTask", {"aparam": "from s3"})
    url = status["data"]["resource_url"]
    assert url.startswith(f"{s3_env['AWS_ENDPOINT_URL']}/"), url  # the presigned URL points at moto
    assert "Signature=" in url or "X-Amz-Signature=" in url, url  # SigV2 or SigV4
    assert requests.get(url, timeout=60).content == b"hello luigi world, from s3\n"
    assert not (served_s3.cwd / "local_targets").exists()


def test_metrics_add_up_every_api_process_and_the_registry(served: Served) -> None:
    """Prometheus' parser reads /metrics: run counts and durations from the registry, HTTP latencies summed over
    the API's gunicorn workers (each request lands on either of two)."""
    for _ in range(40):
        assert requests.get(f"{served.api}/api/chains", timeout=60).status_code == 200
    run_id = _launch_and_wait(served, "TestS3Task")["data"]["run_id"]
    run = closed_at_end(SQLiteRunStore(served.cwd / "nectar_data" / "runs.sqlite3")).get(run_id)
    assert run is not None and run.started_at is not None and run.finished_at is not None
    took = run.finished_at - run.started_at

    answer = requests.get(f"{served.api}/metrics", timeout=60)

    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    runs = {s.labels["state"]: s.value for s in families["nectar_runs"].samples}
    assert runs == {"PENDING": 0, "RUNNING": 0, "DONE": 1, "FAILED": 0, "CANCELLED": 0, "WAITING": 0}
    assert families["nectar_queue_depth"].samples[0].value == 0
    task = f"{HELLO}/TestS3Task"
    durations = {(s.name, s.labels.get("le")): s.value for s in families["nectar_run_duration_seconds"].samples}
    assert durations[("nectar_run_duration_seconds_count", None)] == 1
    assert durations[("nectar_run_duration_seconds_bucket", "+Inf")] == 1
    # the one run's own duration, as the registry recorded it: the sum, and in every bucket from the first that holds it
    assert durations[("nectar_run_duration_seconds_sum", None)] == pytest.approx(took)
    for bound in DURATION_BUCKETS:
        assert durations[("nectar_run_duration_seconds_bucket", str(bound))] == (1 if took <= bound else 0), bound
    assert all(s.labels["task"] == task for s in families["nectar_run_duration_seconds"].samples)
    http = families["nectar_http_request_duration_seconds"].samples
    catalog = [s for s in http if s.name.endswith("_count") and s.labels["endpoint"] == "/api/chains"]
    assert sum(s.value for s in catalog if s.labels["method"] == "GET" and s.labels["status"] == "200") >= 40
    assert any(s.labels["endpoint"] == "/api/chainstatus" for s in http)


def test_json_logs_carry_the_run_id_from_the_api_to_the_worker(tmp_path: Path) -> None:
    served = _serve(tmp_path, {"NECTAR_LOG_FORMAT": "json"})
    running = next(served)
    run_id = _launch_and_wait(running, "TestS3Task")["data"]["run_id"]
    next(served, None)  # SIGTERM: everything stops and flushes

    lines = [line for line in running.log.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    about = {(e["logger"], e["message"].split(": ")[-1]) for e in events if e["run_id"] == run_id}
    assert ("nectar.service", f"chains/{HELLO}/TestS3Task/99914b932bd37a50b983c5e7c90ae93b/out.txt") in about, about
    assert ("nectar.executor", "attempt 1 claimed") in about, about  # the worker
    assert ("nectar.attempt", "DONE") in about, about  # the attempt's process
    others = [line for line in lines if not line.startswith("{")]
    assert not others, others


# --- what nectar serve leaves behind when it dies, and what it refuses ---------------------------------------


def _started_by(pid: int) -> dict[int, str]:
    """Every process under ``pid`` now (children, their children...), with its command line."""
    return {kid: cmdline(kid) for kid in descendants(pid)}


def _gone(started: dict[int, str], what: str) -> None:
    """Wait until none of ``started`` is left (a generous deadline, only there to fail a hung test); kill leftovers."""
    try:
        waitfor(lambda: not any(alive(pid) for pid in started), 60, what)
    except AssertionError:
        left = {pid: line for pid, line in started.items() if alive(pid)}
        for pid in left:
            send(pid, signal.SIGKILL)
        raise AssertionError(f"{what}; still running: {left}") from None


def _closed(port: int) -> None:
    """Nobody answers on ``port`` and it can be listened on again."""
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=60)
    ports.ensure_free("127.0.0.1", port, "a test")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_a_serve_that_is_hung_up_or_killed_leaves_no_process_and_frees_its_ports(served: Served, signum: int) -> None:
    """A closed terminal stops it as Ctrl-C does; ``kill -9`` of the supervisor alone takes every part with it."""
    started = _started_by(served.proc.pid)
    lines = " | ".join(started.values())
    assert "luigid" in lines and "gunicorn" in lines and "nectar.cli worker" in lines, started

    served.proc.send_signal(signum)

    code = served.proc.wait(timeout=60)
    _gone(started, f"the processes of a nectar serve ended by signal {signum} to stop")
    assert code == (0 if signum == signal.SIGHUP else -signal.SIGKILL), served.log.read_text()
    for port in served.ports:
        _closed(port)


def test_a_second_serve_on_the_same_ports_refuses_naming_the_port_and_its_holder(served_unchanged: Served) -> None:
    served = served_unchanged
    api_port, _ = served.ports
    [holder] = [pid for pid in ports.listeners(api_port) if pid in children(served.proc.pid)]  # gunicorn's master

    second = subprocess.run(
        [*NECTAR, "serve"], cwd=served.cwd, env=served.env, capture_output=True, text=True, timeout=60
    )

    said = second.stdout + second.stderr
    assert second.returncode == 2, said
    assert f"port {api_port} (the API, --port) is in use by pid {holder} (" in said and "gunicorn" in said, said
    assert "Datanectar is up" not in said
    assert requests.get(f"{served.api}/api/chains", timeout=60).status_code == 200  # the first one is untouched


@pytest.mark.parametrize("second", ["serve", "scheduler"])
def test_a_second_luigid_on_a_serves_data_folder_is_refused_before_anything_starts(
    served_unchanged: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], second: str
) -> None:
    """A second ``nectar serve`` (or ``nectar scheduler``) on the data folder of a running one, on ports of its own:
    both ran, each luigid writing its whole state into the one file as it stopped (the last over the first's
    tasks, or both at once into a file the next start could not read). Refused in one line, exit 2 (``serve`` a
    real process; ``scheduler`` asked of ``nectar.cli.main`` in this one: :mod:`tests.helpers.suitecli_inprocess`)."""
    served = served_unchanged
    argv = [second, "--scheduler-port", str(free_port())]
    argv += ["--port", str(free_port())] if second == "serve" else []

    if second == "serve":
        refused: subprocess.CompletedProcess[str] | Ended = subprocess.run(
            [*NECTAR, *argv], cwd=served.cwd, env=served.env, capture_output=True, text=True, timeout=60
        )
    else:
        refused = nectar_in_process(monkeypatch, capsys, argv, only(served.env), served.cwd)

    said = refused.stdout + refused.stderr
    assert refused.returncode == 2, said
    [line] = refused.stderr.splitlines()
    assert line.startswith("nectar: the data folder ") and "in use by another nectar serve or nectar scheduler" in line
    assert requests.get(f"{served.api}/api/chains", timeout=60).status_code == 200  # the first one is untouched
    assert answers(f"{served.scheduler}/api/worker_list") is not None  # and its luigid


def only(env: dict[str, str]) -> dict[str, str | None]:
    """``env`` as the whole environment of a command asked in this process: this process's variables of the
    service (``NECTAR_*``, ``AWS_*``) that ``env`` does not hold unset."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("NECTAR_", "AWS_")) and k not in env}
    return {**unset, **env}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port this test process listens on."""
    with bound_to_a_free_port(socket.create_server) as holder:
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "flag", "what"),
    [
        ("serve", "--port", "the API, --port"),
        ("serve", "--scheduler-port", "luigid, --scheduler-port"),
        ("api", "--port", "the API, --port"),
        ("scheduler", "--scheduler-port", "luigid, --scheduler-port"),
    ],
)
def test_a_taken_port_is_refused_before_anything_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    taken_port: int,
    command: str,
    flag: str,
    what: str,
) -> None:
    """``serve --port`` a real process; the others asked of ``nectar.cli.main`` in this one (its pid the holder
    named all the same: :mod:`tests.helpers.suitecli_inprocess`)."""
    other = "--scheduler-port" if flag == "--port" else "--port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")} | lifeline_env()  # (harness/lifeline.py)
    real = (command, flag) == ("serve", "--port")

    def refusing(port: int | None) -> subprocess.CompletedProcess[str] | Ended:
        """The command, with a serve's other port on ``port``: asked again with another free one if that one was
        taken since its pick (the API's port is looked at first: it names the other, not the port under test)."""
        argv = [command, flag, str(taken_port)]
        argv += ["--data-dir", str(tmp_path / "data")] if command != "api" else []
        argv += [other, str(port)] if port is not None else []
        if real:
            done: subprocess.CompletedProcess[str] | Ended = subprocess.run(
                [*NECTAR, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
            )
        else:
            done = nectar_in_process(monkeypatch, capsys, argv, only(env), tmp_path)
        if port is not None and f"port {port} (" in done.stdout + done.stderr:
            raise PortTaken(f"the other port {port} was taken since it was picked")
        return done

    refused = on_a_free_port(refusing) if command == "serve" else refusing(None)

    said = refused.stdout + refused.stderr
    assert refused.returncode == 2, said
    assert f"port {taken_port} ({what}) is in use by pid {os.getpid()} (" in said, said
    assert "Datanectar is up" not in said
    assert not (tmp_path / "data").exists(), "something started before the ports were checked"


@pytest.mark.parametrize(("host", "scheduler_host"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")])
def test_serve_given_one_port_for_its_api_and_its_luigid_refuses_it_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str, scheduler_host: str
) -> None:
    """Both free, each passed the check of a taken port: the API and luigid then raced for it, and ``serve`` said the
    port answered from luigid, not from the API started here (exit 1), or the other way round. The first case a real
    process, the second asked of ``nectar.cli.main`` in this one."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")} | lifeline_env()  # (harness/lifeline.py)
    argv = ["serve", "--port", str(port), "--scheduler-port", str(port), "--data-dir", str(tmp_path / "data")]
    argv += ["--host", host, "--scheduler-host", scheduler_host]

    if host == "127.0.0.1":
        refused: subprocess.CompletedProcess[str] | Ended = subprocess.run(
            [*NECTAR, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    else:
        refused = nectar_in_process(monkeypatch, capsys, argv, only(env), tmp_path)

    said = refused.stdout + refused.stderr
    assert refused.returncode == 2, said
    assert refused.stderr == (
        f"nectar: the API, --port and luigid, --scheduler-port are both port {port}: give each its own\n"
    ), said
    assert not (tmp_path / "data").exists(), "something started before the ports were checked"


def test_readiness_is_believed_only_from_the_part_started_here(tmp_path: Path) -> None:
    """An HTTP server that is not the part (here, this test's) answering on the part's port is no readiness."""
    impostor = bound_to_a_free_port(
        lambda address: http.server.ThreadingHTTPServer(address, http.server.SimpleHTTPRequestHandler)
    )
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    port = impostor.server_port
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    part = Part("api", subprocess.Popen(sleeper, env={**os.environ, **lifeline_env()}))
    try:
        with pytest.raises(RuntimeError) as refused:
            wait_ready(f"http://127.0.0.1:{port}/", part, port)
    finally:
        part.proc.kill()
        part.proc.wait()
        impostor.shutdown()
        impostor.server_close()
    assert f"port {port} answers from pid {os.getpid()} (" in str(refused.value)
    assert f"not from the api started here (pid {part.proc.pid})" in str(refused.value)


def test_a_part_slow_to_start_is_waited_for_while_it_lives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A part that answers only after more than 30 s (a loaded machine: the API's cold start at a load of 45) is
    waited for, not given up ("api did not answer ... within 30s" ended serve with exit 1 while the API started), and
    serve says once, at WARNING, that it still waits for it (a start that hangs is seen, not silent).
    serve's clock is the test's: each of its sleeps between two looks moves it."""
    caplog.set_level(logging.WARNING, logger="nectar.supervisor")
    clock = Clock(1_000_000.0).install(monkeypatch, supervisor)
    port = free_port()
    handler = "http.server.BaseHTTPRequestHandler"  # a 501 to a GET: an answer all the same
    server = f"import http.server, sys; sys.stdin.readline(); http.server.HTTPServer(('127.0.0.1', {port}), {handler})"
    env = {**os.environ, **lifeline_env()}
    proc = subprocess.Popen([sys.executable, "-c", server + ".serve_forever()"], stdin=subprocess.PIPE, env=env)
    part = Part("api", proc)
    answered: list[bool | BaseException] = []

    def waiting() -> None:
        try:
            answered.append(wait_ready(f"http://127.0.0.1:{port}/", part, port))
        except BaseException as exc:
            answered.append(exc)

    awaiting = threading.Thread(target=waiting)
    awaiting.start()
    try:
        waitfor(lambda: clock.now > 1_000_031.0 or not awaiting.is_alive(), 60, "serve to wait past 30 s")
        assert proc.stdin is not None
        proc.stdin.write(b"listen\n")  # it listens now, and answers
        proc.stdin.close()
        awaiting.join(60)
    finally:
        proc.kill()
        proc.wait()
    assert answered == [True]
    said = [r.getMessage() for r in caplog.records if r.name == "nectar.supervisor" and r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert said[0].startswith(f"api (pid {proc.pid}) has not answered on http://127.0.0.1:{port}/ for 3"), said


@pytest.mark.parametrize("role", ["api", "scheduler", "worker"])
def test_sighup_stops_each_role_as_sigterm_does(tmp_path: Path, settings: Settings, role: str) -> None:
    """A closed terminal stops ``nectar api`` (gunicorn would reload and live on), ``nectar scheduler`` (luigid
    would die without saving its state) and ``nectar worker``, each exiting 0 as on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NECTAR_", "AWS_"))}
    env |= settings_env(settings.replace(scheduler_url=None)) | lifeline_env()  # dies with this process
    log = tmp_path / f"{role}.log"
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> tuple[subprocess.Popen[bytes], int]:
        """The role on ``port`` (the worker listens on none), once it has started; :func:`harness.on_a_free_port`
        starts it again on another port where it exits saying this one was taken since its pick."""
        argv = {
            "api": [*NECTAR, "api", "--port", str(port)],
            "scheduler": [*NECTAR, "scheduler", "--scheduler-port", str(port), "--data-dir", str(tmp_path / "luigid")],
            "worker": [*NECTAR, "worker"],
        }[role]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise exited_starting(f"nectar {role} exited with code {proc.returncode}", log.read_text())
            if role == "worker":
                return "slot(s)" in log.read_text()
            return ports.held_by(port, [proc.pid]) is True

        waitfor(ready, 60, f"nectar {role} to start")
        return proc, port

    try:
        proc, port = on_a_free_port(start)
        started = _started_by(proc.pid)

        proc.send_signal(signal.SIGHUP)

        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        for each in procs:
            if each.poll() is None:
                each.kill()
                each.wait()
    _gone(started, f"the processes of nectar {role} to stop")
    if role == "worker":
        assert "stopping: no run is running" in log.read_text()
    else:
        _closed(port)


#: :data:`GATED_CHAIN`, held at its gate in the process that keeps it (a worker's, a clock's), not in the probe child
#: that executes it first (:func:`nectar.catalog.loader.finished_within`: its output goes to ``os.devnull``)
WORKER_GATED_CHAIN = GATED_CHAIN.replace(
    "while not os.path.exists(gate):",
    "while os.readlink('/proc/self/fd/1') != os.devnull and not os.path.exists(gate):",
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("command", [["worker", "--clock"], ["clock"]], ids=["worker", "clock"])
def test_a_worker_or_clock_stopped_before_it_sets_its_handlers_exits_0_as_once_started(
    tmp_path: Path, settings: Settings, command: list[str], signum: int
) -> None:
    """``nectar worker --clock`` (as ``serve`` starts it) and ``nectar clock`` import the chain files (the clock's
    catalog) before they set their signal handlers: a stop there (``serve`` stopped just after it said it is up)
    killed them by the signal (-15, -1) where they exit 0 once started. Held there by a chain whose import waits for
    a gate this test keeps closed (in their own execution: the probe child that executes each file first, which
    writes nowhere, passes it): they stop all the same, nothing claimed or fired yet."""
    gate = tmp_path / "gate"
    (settings.chains_dir / "gated").mkdir()
    (settings.chains_dir / "gated" / "gated_chain.py").write_text(WORKER_GATED_CHAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NECTAR_", "AWS_"))} | {"GATE_FILE": str(gate)}
    env |= settings_env(settings.replace(scheduler_url=None)) | lifeline_env()  # dies with this process
    log = tmp_path / "started.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*NECTAR, *command], cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        waitfor(lambda: held_at(gate, proc.pid) or proc.poll() is not None, 60, f"nectar {command[0]} held")
        assert proc.poll() is None, log.read_text()

        proc.send_signal(signum)

        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_an_api_stopped_while_its_master_loads_the_app_exits_0_as_once_started(
    tmp_path: Path, settings: Settings, signum: int
) -> None:
    """gunicorn's master loads the app (``preload_app``) before it sets its handlers: ``nectar api`` stopped there was
    killed by the signal (-15, -1) where it exits 0 once started. Held there by its tokens file, a FIFO the app reads
    as it is created: its open waits for this test to open the other end, its read for this test to close it."""
    tokens = tmp_path / "tokens"
    os.mkfifo(tokens)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NECTAR_", "AWS_"))}
    env |= settings_env(settings.replace(api_tokens_file=tokens)) | lifeline_env()  # dies with this process
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        argv = [*NECTAR, "api", "--port", str(free_port())]  # never bound: stopped before it listens
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out, stderr=out)
    writer: list[int] = []

    def held() -> bool:
        """Whether the master is reading the FIFO: opening its other end without waiting succeeds only then."""
        assert proc.poll() is None, log.read_text()
        try:
            writer.append(os.open(tokens, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no reader yet
                raise
        return bool(writer)

    try:
        waitfor(held, 60, "the API's master to read its tokens file")

        proc.send_signal(signum)

        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        for fd in writer:
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
