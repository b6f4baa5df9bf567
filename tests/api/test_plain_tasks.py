"""Plain luigi tasks (no NectarTask) through the real service: their outputs where they put them, with
URLs that answer, and their stdout/stderr captured per step like a NectarTask's; each compared with
what ``python -m luigi --local-scheduler`` does with the same chain file."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from harness import STOP_TIMEOUT, Processes, lifeline_env, settings_env
from nectar.config import Settings, configure
from nectar.keys import STDOUT_FILE, TargetKey
from nectar.outputs import SIGNED_PATH_PREFIX
from nectar.stores import get_store
from tests.api.conftest import build_app, finished
from tests.conftest import wait_until
from tests.helpers.module_api import local_settings

SHAPES_CHAIN = '''
"""Plain luigi tasks in the shapes of luigi's examples."""

import collections
import sys
import time
from pathlib import Path

import luigi

OUT = {out!r}
ELSEWHERE = {elsewhere!r}


class HelloWorldTask(luigi.Task):
    """Prints, and has no output."""

    def run(self):
        print("hello from a plain luigi task")
        print("a word on stderr", file=sys.stderr)


class WordCountTask(luigi.Task):
    """Counts words into a LocalTarget of its own."""

    text = luigi.Parameter(default="a b a")

    def output(self):
        return luigi.LocalTarget(f"{{OUT}}/wordcount/{{self.text.replace(' ', '_')}}.txt")

    def run(self):
        print(f"counting the words of {{self.text!r}}")
        counts = collections.Counter(self.text.split())
        with self.output().open("w") as out:
            for word, count in sorted(counts.items()):
                out.write(f"{{word}} {{count}}\\n")


class PairTask(luigi.Task):
    """A list of targets: one under the local targets folder, one elsewhere."""

    def output(self):
        return [luigi.LocalTarget(f"{{OUT}}/pair/first.txt"), luigi.LocalTarget(f"{{ELSEWHERE}}/second.txt")]

    def run(self):
        for number, target in enumerate(self.output()):
            with target.open("w") as out:
                out.write(f"part {{number}}\\n")


class ReportTask(luigi.Task):
    """A dict of targets, from an upstream word count."""

    def requires(self):
        return WordCountTask()

    def output(self):
        return {{"summary": luigi.LocalTarget(f"{{OUT}}/report/summary.txt")}}

    def run(self):
        with self.input().open() as counts, self.output()["summary"].open("w") as out:
            out.write(f"{{len(counts.readlines())}} distinct words\\n")


class LabelTask(luigi.Task):
    """Its output named by whether its label is None (its default) or a text, 'None' too."""

    label = luigi.Parameter(default=None)

    def output(self):
        name = "unlabelled" if self.label is None else f"label-{{self.label}}"
        return luigi.LocalTarget(f"{{OUT}}/label/{{name}}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(f"{{self.label!r}}\\n")


class BrokenTask(luigi.Task):
    """Prints, then raises."""

    def run(self):
        print("about to fail")
        raise ValueError("no input for a plain task")


class WaitingTask(luigi.Task):
    """Prints, then waits for its flag file (and has no output)."""

    flag = luigi.Parameter()

    def run(self):
        print("waiting for the flag", flush=True)
        while not Path(self.flag).exists():
            time.sleep(0.05)
'''


def links_of(data: dict[str, Any]) -> list[str]:
    """Every URL a status (or a run, or a submission) hands out for downloads and logs."""
    urls = [data.get("resource_url"), data.get("stdout_url"), data.get("stderr_url")]
    urls += [output["url"] for output in data.get("outputs", [])]
    for step in data.get("steps", []):
        urls += [step["stdout_url"], step["stderr_url"]]
    return [url for url in urls if url]


def fetch(client: FlaskClient, url: str) -> tuple[int, bytes]:
    """GET a URL the service handed out: its own through the client, S3's (presigned) over HTTP."""
    if url.startswith("http://localhost/"):
        answer = client.get(url)
        return answer.status_code, answer.get_data()
    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - the moto server's URL
        return answer.status, answer.read()


def assert_links_answer(client: FlaskClient, data: dict[str, Any]) -> dict[str, bytes]:
    """Fetch every link ``data`` hands out; each must answer 200. Their bodies, by URL."""
    bodies = {}
    for url in links_of(data):
        status, body = fetch(client, url)
        assert status == 200, (url, status, body[:300])
        bodies[url] = body
    return bodies


@pytest.fixture
def shapes(write_chain: Callable[[str, str], Path], settings: Settings, tmp_path: Path) -> dict[str, Path]:
    """The chain ``plain/shapes_chain``; its local targets folder and a folder outside it."""
    out, elsewhere = settings.local_targets_dir / "plain", tmp_path / "elsewhere"
    write_chain("plain/shapes_chain", SHAPES_CHAIN.format(out=str(out), elsewhere=str(elsewhere)))
    return {"out": out, "elsewhere": elsewhere}


@dataclass
class Served:
    """The module's service on ``plain/shapes_chain``: its settings, the folder whose ``chains`` it is (where
    ``python -m luigi --module chains.plain.shapes_chain`` runs), the chain's local targets folder and a folder
    outside it; a ``nectar worker`` of two slots runs its runs."""

    settings: Settings
    root: Path
    out: Path
    elsewhere: Path

    def client(self) -> FlaskClient:
        """A client of a fresh app on the module's settings, closed at the test's end."""
        return build_app(self.settings).test_client()


@pytest.fixture(scope="module")
def module_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One registry, chains folder and worker for the module's tests that submit runs of their own tasks and keys (no
    test reads another's runs or outputs): a worker's start (~0.7 s of CPU) was each test's."""
    root = tmp_path_factory.mktemp("plain_shapes")
    settings = local_settings(root).replace(heartbeat_interval=0.5, lease_timeout=600.0, drain_grace=5.0)
    out, elsewhere = settings.local_targets_dir / "plain", root / "elsewhere"
    (settings.chains_dir / "plain").mkdir()
    (settings.chains_dir / "plain" / "shapes_chain.py").write_text(
        SHAPES_CHAIN.format(out=str(out), elsewhere=str(elsewhere))
    )
    processes = Processes(root / "logs")
    try:
        processes.worker({**os.environ, **settings_env(settings)}, root, 2)
        yield Served(settings, root, out, elsewhere)
    finally:
        processes.close(grace=STOP_TIMEOUT)


@pytest.fixture
def served(module_served: Served) -> Iterator[Served]:
    """The module's service, its settings this process's for the test (as the ``settings`` fixture's are)."""
    configure(module_served.settings)
    yield module_served
    configure(None)


def plain_luigi(tmp_path: Path, task: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The chain's task under plain luigi, as its user would run it."""
    env = {**os.environ, "PYTHONPATH": str(tmp_path), **lifeline_env()}  # dies with this process (harness/lifeline.py)
    command = [sys.executable, "-m", "luigi", "--module", "chains.plain.shapes_chain", task, "--local-scheduler", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def submit(client: FlaskClient, task: str, **values: str) -> dict[str, Any]:
    answer = client.post(f"/api/chains/plain/shapes_chain/{task}", json=values)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["data"]


def step(data: dict[str, Any], task: str) -> dict[str, Any]:
    return next(step for step in data["steps"] if step["task"] == task)


def test_a_printing_task_without_output_has_its_print_in_its_stdout_log(served: Served) -> None:
    """Its print reached only the worker's terminal, and its log URLs answered 404."""
    client, settings = served.client(), served.settings
    plain = plain_luigi(served.root, "HelloWorldTask")
    assert plain.returncode == 0 and "hello from a plain luigi task" in plain.stdout, plain.stderr

    queued = submit(client, "HelloWorldTask")
    # DONE once luigi's own rule holds for a task without output (issue 16 point 1); the logs are there either way
    status = finished(client, queued["status_url"])
    own = step(status, "HelloWorldTask")
    assert own["key"] == queued["key"] == TargetKey.for_task("plain", "shapes_chain", "HelloWorldTask", {}).path
    assert status["outputs"] == [] and status["resource_url"] is None
    assert status["resource_note"] == "HelloWorldTask has no output"
    bodies = assert_links_answer(client, status)
    assert b"hello from a plain luigi task" in bodies[own["stdout_url"]]
    assert b"a word on stderr" in bodies[own["stderr_url"]]
    assert (status["stdout_url"], status["logs_task"]) == (own["stdout_url"], "HelloWorldTask")
    params = settings.local_targets_dir / TargetKey.parse(queued["key"]).with_file("params.txt").path
    assert '"task": "HelloWorldTask"' in params.read_text()
    assert_links_answer(client, client.get(f"/api/runs/{queued['run_id']}").get_json()["data"])


def test_a_failing_plain_task_keeps_what_it_printed_and_its_traceback(served: Served) -> None:
    client = served.client()
    plain = plain_luigi(served.root, "BrokenTask")
    assert "ValueError: no input for a plain task" in plain.stderr and "about to fail" in plain.stdout

    queued = submit(client, "BrokenTask")
    status = finished(client, queued["status_url"])
    assert status["job_status"] == "FAILED" and status["failed_step"] == "BrokenTask", status
    bodies = assert_links_answer(client, status)
    assert b"about to fail" in bodies[status["stdout_url"]]
    assert b"ValueError: no input for a plain task" in bodies[status["stderr_url"]]
    assert b"Traceback" in bodies[status["stderr_url"]]


def test_a_task_with_its_own_local_target_is_downloadable_where_it_wrote(served: Served) -> None:
    """It was DONE, but its resource_url pointed at an md5 out.txt nothing wrote (404), expires_in null."""
    client, settings, shapes = served.client(), served.settings, {"out": served.out}
    plain = plain_luigi(served.root, "WordCountTask", "--text", "x y x")
    assert plain.returncode == 0, plain.stderr
    assert (shapes["out"] / "wordcount" / "x_y_x.txt").read_text() == "x 2\ny 1\n"

    queued = submit(client, "ReportTask")
    status = finished(client, queued["status_url"])
    assert status["job_status"] == "DONE", status
    summary = str(shapes["out"] / "report" / "summary.txt")
    assert [output["target"] for output in status["outputs"]] == [summary]
    assert status["resource_url"] == status["outputs"][0]["url"] and status["resource_note"] is None
    assert status["expires_in"] == settings.url_expiry
    bodies = assert_links_answer(client, status)
    assert bodies[status["resource_url"]] == b"2 distinct words\n"
    upstream = step(status, "WordCountTask")
    assert b"counting the words of 'a b a'" in bodies[upstream["stdout_url"]]

    run = client.get(f"/api/runs/{queued['run_id']}").get_json()["data"]
    assert [output["target"] for output in run["outputs"]] == [summary]
    assert_links_answer(client, run)

    # the upstream task, asked for itself: its own output, downloadable, like luigi wrote it for x y x
    again = client.post("/api/chains/plain/shapes_chain/WordCountTask", json={})
    assert again.status_code == 200, again.get_json()  # DONE by its own complete(): nothing runs again
    data = again.get_json()["data"]
    assert data["outputs"][0]["target"] == str(shapes["out"] / "wordcount" / "a_b_a.txt")
    assert assert_links_answer(client, data)[data["resource_url"]] == b"a 2\nb 1\n"


def test_outputs_outside_the_allowed_folders_are_listed_without_a_url(
    served: Served, client_for: Callable[[Settings], FlaskClient]
) -> None:
    client, settings, shapes = served.client(), served.settings, {"out": served.out, "elsewhere": served.elsewhere}
    queued = submit(client, "PairTask")
    status = finished(client, queued["status_url"])
    assert status["job_status"] == "DONE", status
    first, second = status["outputs"]
    assert (first["target"], second["target"]) == (
        str(shapes["out"] / "pair/first.txt"),
        str(shapes["elsewhere"] / "second.txt"),
    )
    assert first["url"] == status["resource_url"] and first["note"] is None
    assert second["url"] is None and "not under a folder the service serves" in second["note"]
    assert_links_answer(client, status)

    wider = client_for(settings.replace(output_roots=str(shapes["elsewhere"])))  # NECTAR_OUTPUT_ROOTS
    status = wider.get(queued["status_url"]).get_json()["data"]
    assert all(output["url"] for output in status["outputs"]), status["outputs"]
    assert assert_links_answer(wider, status)[status["outputs"][1]["url"]] == b"part 1\n"


def test_a_running_plain_task_logs_live_and_keeps_its_logs_when_cancelled(served: Served, tmp_path: Path) -> None:
    client, settings = served.client(), served.settings
    queued = submit(client, "WaitingTask", flag=str(tmp_path / "never"))

    def printed() -> dict[str, Any] | None:
        status = client.get(queued["status_url"]).get_json()["data"]
        url = status["stdout_url"]
        return status if url and b"waiting for the flag" in fetch(client, url)[1] else None

    running = wait_until(printed, timeout=60, interval=0.1)
    assert isinstance(running, dict) and running["job_status"] == "RUNNING", running
    cancelled = client.post(f"/api/runs/{queued['run_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.get_json()

    key = TargetKey.parse(queued["key"])
    stored = settings.local_targets_dir / key.with_file(STDOUT_FILE).path
    wait_until(stored.exists, timeout=60)  # saved when its attempt was interrupted
    status = client.get(queued["status_url"]).get_json()["data"]
    assert status["job_status"] == "CANCELLED", status
    bodies = assert_links_answer(client, status)
    assert b"waiting for the flag" in bodies[status["stdout_url"]]
    assert b"interrupted" in bodies[status["stderr_url"]]


def test_a_plain_task_logs_reach_s3_while_it_runs(
    client_for: Callable[[Settings], FlaskClient],
    s3_settings: Settings,
    tmp_path: Path,
    shapes: dict[str, Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """NECTAR_LOG_SYNC copies a plain task's growing logs to S3, as a NectarTask's."""
    settings = s3_settings.replace(log_sync_interval=0.2)
    client = client_for(settings)
    flag = tmp_path / "go"
    queued = submit(client, "WaitingTask", flag=str(flag))
    start_worker(settings)
    key = TargetKey.parse(queued["key"])
    store = get_store(settings)
    stdout = key.with_file(STDOUT_FILE)
    # the log is copied as it grows: a copy made before the task's first line is there is empty (waited past)
    wait_until(lambda: store.exists(stdout) and b"waiting for the flag" in b"".join(store.iter_bytes(stdout)), 60)
    assert client.get(queued["status_url"]).get_json()["data"]["job_status"] == "RUNNING"
    flag.touch()
    status = finished(client, queued["status_url"])
    assert_links_answer(client, status)


def test_a_signed_path_cannot_be_turned_into_another_file(
    app: Flask, client: FlaskClient, settings: Settings, tmp_path: Path
) -> None:
    served = settings.local_targets_dir / "plain" / "a.txt"
    served.parent.mkdir(parents=True)
    served.write_text("mine\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    signer = app.extensions["nectar_signer"]
    signed = signer.sign(SIGNED_PATH_PREFIX + str(served), 60)
    query = {"path": str(served), "expires": signed["expires"], "signature": signed["signature"]}
    assert client.get("/api/files", query_string=query).data == b"mine\n"

    for path in (str(secret), f"{served.parent}/../../secret.txt", str(served.parent / "b.txt")):
        answer = client.get("/api/files", query_string={**query, "path": path})
        assert answer.status_code == 403 and "does not match" in answer.get_json()["message"]
    as_key = signer.sign(str(served), 60)  # a signature of the bare path (a key's form) is no path's
    as_key["path"] = as_key.pop("key")
    answer = client.get("/api/files", query_string=as_key)
    assert answer.status_code == 403

    served.unlink()
    served.symlink_to(secret)  # swapped for a link out of the folder after it was signed
    answer = client.get("/api/files", query_string=query)
    assert answer.status_code == 400 and "resolves outside" in answer.get_json()["message"]
    served.unlink()
    assert client.get("/api/files", query_string=query).status_code == 404


@pytest.mark.parametrize("which", [{}, {"key": "chains/a/b_chain/T/" + "0" * 32 + "/out.txt", "path": "/x"}])
def test_a_download_names_either_a_key_or_a_path(client: FlaskClient, which: dict[str, str]) -> None:
    answer = client.get("/api/files", query_string={**which, "expires": "1", "signature": "0"})
    assert answer.status_code == 422 and "give either key or path" in str(answer.get_json()["errors"])


S3_CHAIN = '''
"""A plain luigi task writing an S3Target of its own (top_artists' shape)."""

import luigi
from luigi.contrib.s3 import S3Target


class TopArtistsTask(luigi.Task):
    top = luigi.IntParameter(default=3)

    def output(self):
        return S3Target(f"s3://{bucket}/plain/top{{self.top}}.txt")

    def run(self):
        print("ranking the artists")
        with self.output().open("w") as out:
            out.write("".join(f"artist {{n}}\\n" for n in range(1, self.top + 1)))
'''


def test_a_task_with_its_own_s3_target_gets_a_presigned_url(
    client_for: Callable[[Settings], FlaskClient],
    s3_settings: Settings,
    tmp_path: Path,
    write_chain: Callable[[str, str], Path],
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_chain("plain/s3_chain", S3_CHAIN.format(bucket=s3_settings.bucket))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), **lifeline_env()}  # dies with this process (harness/lifeline.py)
    command = [sys.executable, "-m", "luigi", "--module", "chains.plain.s3_chain", "TopArtistsTask", "--top", "2"]
    plain = subprocess.run([*command, "--local-scheduler"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    store = get_store(s3_settings)
    assert (
        b"".join(store.boto.get_object(Bucket=s3_settings.bucket, Key="plain/top2.txt")["Body"])
        == b"artist 1\nartist 2\n"
    )

    client = client_for(s3_settings)
    answer = client.post("/api/chains/plain/s3_chain/TopArtistsTask", json={})
    assert answer.status_code == 202, answer.get_json()
    start_worker(s3_settings)
    status = finished(client, answer.get_json()["data"]["status_url"])
    assert status["job_status"] == "DONE", status
    assert status["outputs"][0]["target"] == f"s3://{s3_settings.bucket}/plain/top3.txt"
    assert status["resource_url"] == status["outputs"][0]["url"] and status["expires_in"] == s3_settings.url_expiry
    bodies = assert_links_answer(client, status)
    assert bodies[status["resource_url"]] == b"artist 1\nartist 2\nartist 3\n"
    assert b"ranking the artists" in bodies[status["stdout_url"]]


def test_a_done_plain_task_whose_output_was_deleted_reads_not_complete_as_luigi_counts_it(served: Served) -> None:
    """review16: its run DONE, its own output deleted since. luigi counts the task not complete (``python -m
    luigi`` runs it again); the status read DONE (the row's state) with a null URL. It reads MISSING (not PENDING,
    which says a run is queued: review18), saying the output is gone and that no run is queued to make it; once the
    output is there again (luigi made it), DONE. The run's own page keeps the run's state, DONE."""
    client = served.client()
    queued = submit(client, "WordCountTask", text="d e d")
    made = served.out / "wordcount" / "d_e_d.txt"
    assert finished(client, queued["status_url"])["job_status"] == "DONE"
    made.unlink()
    status = client.get(queued["status_url"]).get_json()["data"]
    assert (status["job_status"], status["run_id"], status["resource_url"]) == ("MISSING", queued["run_id"], None)
    assert status["error"] == (
        f"not complete: its output {made} no longer exists (run {queued['run_id']} made it, DONE), so luigi counts "
        "WordCountTask not complete; no run is queued to make it again: submit it again"
    )
    assert status["outputs"] == [{"note": "does not exist", "target": str(made), "url": None}]
    assert client.get(f"/api/runs/{queued['run_id']}").get_json()["data"]["job_status"] == "DONE"
    plain = plain_luigi(served.root, "WordCountTask", "--text", "d e d")
    assert "1 ran successfully" in plain.stderr + plain.stdout, plain.stderr  # not complete: luigi ran it again
    again = client.get(queued["status_url"]).get_json()["data"]
    assert (again["job_status"], again["error"], again["resource_url"]) == ("DONE", None, again["outputs"][0]["url"])


def test_a_done_task_submitted_again_lists_the_outputs_its_status_lists_a_value_given_as_its_defaults_text_too(
    served: Served,
) -> None:
    """A submission of a task already DONE answers 200 with its outputs; they are the ones its status lists.
    ``'None'`` given for ``Parameter(default=None)`` is the string (as ``python -m luigi --label None`` gives it), so
    its output is ``label-None.txt``: the dedupe answer listed ``unlabelled.txt`` (``does not exist``), its
    parameters read without the run's ``"(given)"`` member (``nectar.params.run_params``)."""
    client = served.client()
    queued = submit(client, "LabelTask", label="None")
    status = finished(client, queued["status_url"])
    made = served.out / "label" / "label-None.txt"
    assert (status["job_status"], [output["target"] for output in status["outputs"]]) == ("DONE", [str(made)])
    again = client.post("/api/chains/plain/shapes_chain/LabelTask", json={"label": "None"})
    assert again.status_code == 200, again.get_json()
    data = again.get_json()["data"]
    assert data["job_status"] == "DONE"
    assert [(o["target"], o["note"]) for o in data["outputs"]] == [(o["target"], o["note"]) for o in status["outputs"]]
    assert data["outputs"][0]["url"] and data["resource_url"] == data["outputs"][0]["url"]
