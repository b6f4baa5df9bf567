"""The catalog of a chain file written as plain luigi: hidden tasks with why, ``__nectar_tasks__``, upstream
tasks, and an alias that is one task (one folder, every URL answering) through the real service."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from harness import lifeline_env
from nectar.config import Settings
from tests.api.conftest import finished
from tests.conftest import NECTAR, settings_env
from tests.nectar.test_discovery_rules import ALIASED, NOT_TASK, SIX_PLAIN

WriteChain = Callable[[str, str], Path]


def data_of(client: FlaskClient, url: str) -> Any:
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.get_json())
    return answer.get_json()["data"]


def test_every_catalog_answer_lists_the_hidden_tasks_with_why(client: FlaskClient, write_chain: WriteChain) -> None:
    """Before, a chain of six luigi tasks was {"tasks": [], "error": null}: hidden without a word."""
    write_chain("plain/six_chain", SIX_PLAIN)
    chain = data_of(client, "/api/chains/plain/six_chain")
    assert (chain["tasks"], chain["error"]) == ([], None)
    assert {"name": "HelloWorld", "reason": NOT_TASK} in chain["hidden"]
    assert [h["name"] for h in chain["hidden"]] == ["Base", "Count", "Everything", "HelloWorld", "Top", "Words"]
    assert data_of(client, "/api/chains/plain")["chains"][0]["hidden"] == chain["hidden"]
    everything = {c["name"]: c for t in data_of(client, "/api/chains") for c in t["chains"]}
    assert everything["six_chain"]["hidden"] == chain["hidden"]
    assert everything["sales_chain"]["hidden"] == []

    answer = client.post("/api/chains/plain/six_chain/HelloWorld")
    assert answer.status_code == 404
    assert answer.get_json()["message"] == (
        f"HelloWorld is a luigi task of chain plain/six_chain but is not exposed: {NOT_TASK}"
    )


def test_listed_tasks_are_served_with_their_upstream(client: FlaskClient, write_chain: WriteChain) -> None:
    write_chain("plain/six_chain", SIX_PLAIN + '__nectar_tasks__ = ["Everything", "Top", "HelloWorld", "Count"]\n')
    tasks = {t["name"]: t for t in data_of(client, "/api/chains/plain/six_chain")["tasks"]}
    assert {name: t["requires"] for name, t in tasks.items()} == {
        "Count": ["Words"],
        "Everything": ["HelloWorld", "Count"],
        "HelloWorld": [],
        "Top": ["Count", "HelloWorld"],
    }
    assert data_of(client, tasks["Top"]["api_href"])["params"][0]["name"] == "n"


def test_a_bad_nectar_tasks_entry_is_the_chains_error(client: FlaskClient, write_chain: WriteChain) -> None:
    write_chain("plain/six_chain", SIX_PLAIN + '__nectar_tasks__ = ["HelloWorld", "Helo"]\n')
    chain = data_of(client, "/api/chains/plain/six_chain")
    assert (chain["error"], chain["tasks"]) == ("__nectar_tasks__: Helo is not defined in this file", [])
    answer = client.post("/api/chains/plain/six_chain/HelloWorld")
    assert answer.status_code == 404
    assert answer.get_json()["message"] == (
        "chain plain/six_chain exposes no task: __nectar_tasks__: Helo is not defined in this file"
    )


def test_the_chains_page_and_nectar_chains_show_aliases_and_hidden_tasks(
    client: FlaskClient, settings: Settings, write_chain: WriteChain
) -> None:
    write_chain("plain/six_chain", SIX_PLAIN)
    write_chain("music/artists_chain", ALIASED)
    page = client.get("/").get_data(as_text=True)
    assert "6 luigi tasks not exposed" in page
    assert "its name does not end in Task; add it to __nectar_tasks__ to expose it" in page
    assert "also Top10ArtistsTask" in page

    listed = subprocess.run(
        [*NECTAR, "chains"],
        env={**os.environ, **settings_env(settings), **lifeline_env()},  # dies with this process (harness/lifeline.py)
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert ["music/artists_chain", "Top10Artists", "(also", "Top10ArtistsTask)", "n:int=10"] in rows, listed.stdout
    assert any(
        line.startswith("plain/six_chain") and "(HelloWorld: not exposed)" in line and NOT_TASK in line
        for line in listed.stdout.splitlines()
    ), listed.stdout


def handed_out(data: dict[str, Any]) -> list[str]:
    """Every URL in a status or submission answer, its steps' included."""
    urls = [data.get(name) for name in ("status_url", "resource_url", "stdout_url", "stderr_url")]
    urls += [step.get(name) for step in data.get("steps", []) for name in ("stdout_url", "stderr_url")]
    return [url for url in urls if url]


def test_an_alias_is_one_task_one_folder_and_every_url_answers(
    client: FlaskClient,
    settings: Settings,
    write_chain: WriteChain,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Before, a POST by the alias looked under Top10ArtistsTask/ while the task wrote its params and logs
    under Top10Artists/: the status never saw them and its links answered 404."""
    write_chain("music/artists_chain", ALIASED)
    described = data_of(client, "/api/chains/music/artists_chain/Top10ArtistsTask")
    assert (described["name"], described["aliases"]) == ("Top10Artists", ["Top10ArtistsTask"])
    assert described["api_href"] == "http://localhost/api/chains/music/artists_chain/Top10Artists"
    assert data_of(client, described["api_href"])["name"] == "Top10Artists"

    queued = client.post("/api/chains/music/artists_chain/Top10ArtistsTask", json={"n": 3})
    assert queued.status_code == 202, queued.get_json()
    submitted = queued.get_json()["data"]
    folder = submitted["key"].rsplit("/", 1)[0]
    assert folder.startswith("chains/music/artists_chain/Top10Artists/")

    start_worker(settings)
    status = finished(client, submitted["status_url"])
    assert status["job_status"] == "DONE", status
    for url in handed_out(submitted) + handed_out(status):
        assert client.get(url).status_code == 200, url
    assert client.get(status["stdout_url"]).get_data(as_text=True) == "top 3 artists\n"

    task_folders = sorted(p.name for p in (settings.local_targets_dir / "chains/music/artists_chain").iterdir())
    assert task_folders == ["Top10Artists"]
    files = sorted(
        str(p.relative_to(settings.local_targets_dir / folder))
        for p in (settings.local_targets_dir / folder).rglob("*")
        if p.is_file()
    )
    assert files == ["log/stderr.log", "log/stdout.log", "out.txt", "params.txt"]

    for name in ("Top10ArtistsTask", "Top10Artists"):  # by either name: the same task, done
        again = client.post(f"/api/chains/music/artists_chain/{name}", json={"n": 3})
        assert again.status_code == 200 and again.get_json()["data"]["key"] == submitted["key"], again.get_json()
        for url in handed_out(again.get_json()["data"]):
            assert client.get(url).status_code == 200, url


def test_a_task_exposed_by_the_list_runs_through_the_service(
    client: FlaskClient,
    settings: Settings,
    write_chain: WriteChain,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    write_chain("music/artists_chain", ALIASED)
    queued = client.post("/api/chains/music/artists_chain/Streams")
    assert queued.status_code == 202, queued.get_json()
    start_worker(settings)
    status = finished(client, queued.get_json()["data"]["status_url"])
    assert status["job_status"] == "DONE", status
    assert client.get(status["resource_url"]).get_data(as_text=True) == "streams\n"
