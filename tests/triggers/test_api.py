"""``/api/triggers`` through the real app: made, refused naming the field, paused, removed, its objects, the error of
a bucket gone in the listing later, and a file landing run to DONE by a real worker, named in the runs."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from flask.testing import FlaskClient

from harness import NECTAR, Processes, settings_env, waitfor
from nectar.config import Settings
from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.api.conftest import build_app, finished
from tests.helpers.registries import closed_at_end
from tests.schedules.test_api import conforms
from tests.triggers.test_core import declared, land, landing, nectar  # noqa: F401  (fixtures)

#: the trigger LoadFileTask declares in test_core's chain file
FILE_TRIGGER = "ingest.landing_chain.LoadFileTask.csv"
LOAD_FILE = "ingest/landing_chain/LoadFileTask"


@pytest.fixture
def client(settings: Settings, nectar: Nectar) -> FlaskClient:  # noqa: F811
    return build_app(settings).test_client()


def definition(folder: Path | str, **changes: Any) -> dict[str, Any]:
    return {"task": LOAD_FILE, "prefix": str(folder), "glob": "*.csv", "param": "path", **changes}


def created(client: FlaskClient, folder: Path | str, **changes: Any) -> dict[str, Any]:
    answer = client.post("/api/triggers", json=definition(folder, **changes))
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["data"]


def listed(client: FlaskClient) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/triggers")
    assert answer.status_code == 200, answer.get_json()
    return {trigger["id"]: trigger for trigger in answer.get_json()["data"]}


def tick(settings: Settings) -> None:
    """One pass of a trigger loop of its own (another process's, as ``nectar clock``'s)."""
    TriggerLoop(closed_at_end(Nectar(settings)).triggers).tick()


def test_a_trigger_is_made_with_its_cursor_and_listed(
    client: FlaskClient,
    settings: Settings,
    landing: Path,  # noqa: F811
) -> None:
    (old,) = land(landing, "2026-06-01.csv")
    os.utime(old, (1e9, 1e9))  # there long before the trigger
    data = created(client, landing, params={})
    assert data["source"] == "api" and not data["paused"] and data["cursor"] is None  # its first poll starts it
    assert {name: data[name] for name in ("task", "prefix", "glob", "param", "params")} == {
        "task": LOAD_FILE,
        "prefix": str(landing),
        "glob": "*.csv",
        "param": "path",
        "params": {},
    }
    assert (data["existing"], data["batch_size"], data["poll_s"]) == ("new", None, 10.0)
    assert (data["objects_seen"], data["runs_made"], data["files_waiting"], data["error"]) == (0, 0, 0, None)
    assert data["objects_url"].endswith(f"/api/triggers/{data['id']}/objects")
    assert client.get(f"/api/triggers/{data['id']}").get_json()["data"] == data
    assert listed(client)[data["id"]] == data
    tick(settings)
    started = client.get(f"/api/triggers/{data['id']}").get_json()["data"]
    assert (started["cursor"], started["objects_seen"]) == ("2026-06-01.csv", 0)
    assert created(client, landing, existing="all")["cursor"] == ""


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prefix": "relative/folder"}, "prefix"),
        ({"prefix": "s3://"}, "prefix"),
        ({"glob": "[oops"}, "glob"),
        ({"task": "ingest/landing_chain/NoSuchTask"}, "task"),
        ({"task": "LoadFileTask"}, "task"),
        ({"param": "nope"}, "param"),
        ({"params": {"day": "x"}}, "params.day"),
        ({"params": {"path": "x"}}, "params.path"),
        ({"params": []}, "params"),
        ({"batch_size": 3}, "batch_size"),
        ({"task": "ingest/landing_chain/LoadManyTask", "param": "paths"}, "param"),
        ({"existing": "some"}, "existing"),
        ({"colour": "red"}, "colour"),
        ({"poll_s": 0}, "poll_s"),
        ({"paused": "yes"}, "paused"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_stored(
    client: FlaskClient,
    landing: Path,  # noqa: F811
    changes: dict,
    field: str,
) -> None:
    before = listed(client)
    answer = client.post("/api/triggers", json=definition(landing, **changes))
    assert answer.status_code == 422, answer.get_json()
    assert field in answer.get_json()["errors"], answer.get_json()
    assert listed(client) == before


def test_a_missing_folder_is_named(client: FlaskClient, tmp_path: Path) -> None:
    answer = client.post("/api/triggers", json=definition(tmp_path / "nowhere"))
    assert answer.status_code == 422, answer.get_json()
    assert str(tmp_path / "nowhere") in " ".join(answer.get_json()["errors"]["prefix"])


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_no_json_object_is_refused(client: FlaskClient, body: bytes) -> None:
    answer = client.post("/api/triggers", data=body, content_type="application/json")
    assert answer.status_code == 422 and "_body" in answer.get_json()["errors"], answer.get_json()


def test_a_file_trigger_is_listed_paused_over_http_and_edited_only_in_its_file(client: FlaskClient) -> None:
    trigger = listed(client)[FILE_TRIGGER]
    assert trigger["source"] == "file" and trigger["path"] == "ingest/landing_chain.py"
    assert (trigger["task"], trigger["existing"], trigger["cursor"]) == (LOAD_FILE, "all", None)
    edit = client.patch(f"/api/triggers/{FILE_TRIGGER}", json={"glob": "*.txt"})
    assert edit.status_code == 409 and "ingest/landing_chain.py" in edit.get_json()["message"], edit.get_json()
    paused = client.patch(f"/api/triggers/{FILE_TRIGGER}", json={"paused": True})
    assert paused.status_code == 200 and paused.get_json()["data"]["paused"], paused.get_json()
    assert listed(client)[FILE_TRIGGER]["paused"]
    resumed = client.patch(f"/api/triggers/{FILE_TRIGGER}", json={"paused": False})
    assert resumed.status_code == 200 and not resumed.get_json()["data"]["paused"], resumed.get_json()
    removed = client.delete(f"/api/triggers/{FILE_TRIGGER}")
    assert removed.status_code == 409 and "ingest/landing_chain.py" in removed.get_json()["message"]
    assert FILE_TRIGGER in listed(client)


def test_a_trigger_made_here_is_changed_and_removed(client: FlaskClient, landing: Path) -> None:  # noqa: F811
    trigger = created(client, landing)
    changed = client.patch(f"/api/triggers/{trigger['id']}", json={"glob": "*.json", "poll_s": 2})
    assert changed.status_code == 200, changed.get_json()
    assert (changed.get_json()["data"]["glob"], changed.get_json()["data"]["poll_s"]) == ("*.json", 2.0)
    refused = client.patch(f"/api/triggers/{trigger['id']}", json={"glob": "[oops"})
    assert refused.status_code == 422 and "glob" in refused.get_json()["errors"], refused.get_json()
    moved = client.patch(f"/api/triggers/{trigger['id']}", json={"prefix": "/elsewhere"})
    assert moved.status_code == 422 and "prefix" in moved.get_json()["errors"], moved.get_json()
    assert listed(client)[trigger["id"]]["glob"] == "*.json"
    removed = client.delete(f"/api/triggers/{trigger['id']}")
    assert removed.status_code == 200 and removed.get_json()["data"]["id"] == trigger["id"]
    assert trigger["id"] not in listed(client)


@pytest.mark.parametrize(("method", "path"), [("get", ""), ("patch", ""), ("delete", ""), ("get", "/objects")])
def test_an_unknown_trigger_is_a_404_naming_it(client: FlaskClient, method: str, path: str) -> None:
    answer = getattr(client, method)(f"/api/triggers/nosuch{path}", json={"paused": True})
    assert answer.status_code == 404 and "nosuch" in answer.get_json()["message"], answer.get_json()


def test_the_objects_are_listed_newest_first_with_their_runs(
    client: FlaskClient,
    settings: Settings,
    landing: Path,  # noqa: F811
) -> None:
    trigger = created(client, landing)
    paths = land(landing, "2026-06-02.csv", "2026-06-03.csv", "2026-06-04.csv")
    tick(settings)
    answer = client.get(f"{trigger['objects_url']}?limit=2")
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()["data"]
    assert data["counts"] == {"queued": 2, "done": 0, "skipped": 0}
    assert [(o["key"], o["uri"], o["state"], o["job_status"]) for o in data["objects"]] == [
        ("2026-06-04.csv", paths[2], "queued", "PENDING"),
        ("2026-06-03.csv", paths[1], "queued", "PENDING"),
    ]
    run = client.get(data["objects"][0]["run_url"]).get_json()["data"]
    assert (run["run_id"], run["trigger_id"], run["objects"]) == (
        data["objects"][0]["run_id"],
        trigger["id"],
        [paths[2]],
    )
    view = client.get(f"/api/triggers/{trigger['id']}").get_json()["data"]
    assert (view["objects_seen"], view["runs_made"], view["files_waiting"]) == (3, 3, 3)
    assert (view["cursor"], view["last_object"]) == ("2026-06-04.csv", paths[2])
    bad = client.get(f"{trigger['objects_url']}?limit=0")
    assert bad.status_code == 422 and "limit" in str(bad.get_json()["errors"]), bad.get_json()


def test_a_landed_file_is_run_to_done_by_a_worker_and_the_run_names_its_trigger(
    client: FlaskClient,
    settings: Settings,
    landing: Path,  # noqa: F811
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    trigger = created(client, landing)
    (path,) = land(landing, "2026-06-05.csv")
    tick(settings)
    start_worker(settings, workers=1)
    (run,) = client.get("/api/runs").get_json()["data"]
    assert (run["trigger_id"], run["objects"], run["params"]) == (trigger["id"], [path], {"path": path})
    done = finished(client, run["status_url"])
    assert done["job_status"] == "DONE", done
    assert (done["trigger_id"], done["objects"]) == (trigger["id"], [path])
    assert client.get(done["resource_url"]).data == path.encode()  # the task was given the file's absolute path
    one = client.get(f"/api/runs/{run['run_id']}").get_json()["data"]
    assert (one["trigger_id"], one["objects"], one["job_status"]) == (trigger["id"], [path], "DONE")
    (found,) = client.get(trigger["objects_url"]).get_json()["data"]["objects"]
    assert (found["run_id"], found["job_status"]) == (run["run_id"], "DONE")
    assert client.get(f"/api/triggers/{trigger['id']}").get_json()["data"]["files_waiting"] == 0


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A bucket of its own on the moto server (the test deletes it)."""
    name = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_a_bucket_that_does_not_exist_is_named_with_s3s_error(client: FlaskClient, s3_env: dict[str, str]) -> None:
    missing = f"no-such-{uuid.uuid4().hex[:12]}"
    answer = client.post("/api/triggers", json=definition(f"s3://{missing}/sales/"))
    assert answer.status_code == 422, answer.get_json()
    said = " ".join(answer.get_json()["errors"]["prefix"])
    assert missing in said and "NoSuchBucket" in said, said
    assert [t for t in listed(client).values() if t["source"] == "api"] == []


def test_a_bucket_gone_after_creation_shows_in_the_listing_later(
    client: FlaskClient, settings: Settings, bucket: str
) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="sales/2026-06-01.csv", Body=b"a")
    trigger = created(client, f"s3://{bucket}/sales/", existing="all")
    tick(settings)
    (found,) = client.get(trigger["objects_url"]).get_json()["data"]["objects"]
    assert found["uri"] == f"s3://{bucket}/sales/2026-06-01.csv"
    s3.delete_object(Bucket=bucket, Key="sales/2026-06-01.csv")
    s3.delete_bucket(Bucket=bucket)

    tick(settings)

    view = client.get(f"/api/triggers/{trigger['id']}").get_json()["data"]
    assert view["error"] and bucket in view["error"] and "NoSuchBucket" in view["error"], view
    assert listed(client)[trigger["id"]]["error"] == view["error"]


def test_an_object_put_to_s3_is_run_to_done_by_a_real_clock_and_worker(
    client: FlaskClient,
    settings: Settings,
    bucket: str,
    processes: Processes,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    trigger = created(client, f"s3://{bucket}/sales/", poll_s=0.2)
    env = {**os.environ, **settings_env(settings)}  # the moto server's AWS variables, and the registry
    clock = processes.start("clock", [*NECTAR, "clock"], env)
    start_worker(settings, workers=1)
    uri = f"s3://{bucket}/sales/2026-06-01T0300.csv"
    boto3.client("s3").put_object(Bucket=bucket, Key="sales/2026-06-01T0300.csv", Body=b"rows")

    def made() -> list[dict[str, Any]]:
        assert clock.poll() is None, f"nectar clock exited with {clock.returncode}"
        return [run for run in client.get("/api/runs").get_json()["data"] if run["trigger_id"] == trigger["id"]]

    (run,) = waitfor(made, 60, f"nectar clock to queue a run of trigger {trigger['id']} for {uri}")
    assert (run["objects"], run["params"]) == ([uri], {"path": uri})
    done = finished(client, run["status_url"])
    assert (done["job_status"], done["trigger_id"], done["objects"]) == ("DONE", trigger["id"], [uri]), done
    assert client.get(done["resource_url"]).data == uri.encode()


def test_writes_need_a_write_token(settings: Settings, nectar: Nectar, landing: Path) -> None:  # noqa: F811
    from nectar.auth import new_token

    read, read_digest = new_token()
    client = build_app(settings.replace(api_tokens=f"{read_digest}:read:reader")).test_client()
    assert client.get("/api/triggers").status_code == 401
    headers = {"Authorization": f"Bearer {read}"}
    assert client.get("/api/triggers", headers=headers).status_code == 200
    assert client.get(f"/api/triggers/{FILE_TRIGGER}/objects", headers=headers).status_code == 200
    assert client.post("/api/triggers", json=definition(landing), headers=headers).status_code == 403
    assert client.patch(f"/api/triggers/{FILE_TRIGGER}", json={"paused": True}, headers=headers).status_code == 403
    assert client.delete(f"/api/triggers/{FILE_TRIGGER}", headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/triggers", "get", {"200", "422"}),
        ("/api/triggers", "post", {"201", "401", "403", "422"}),
        ("/api/triggers/{trigger_id}", "get", {"200", "404"}),
        ("/api/triggers/{trigger_id}", "patch", {"200", "404", "409", "422"}),
        ("/api/triggers/{trigger_id}", "delete", {"200", "404", "409"}),
        ("/api/triggers/{trigger_id}/objects", "get", {"200", "404", "422"}),
    ],
)
def test_every_endpoint_is_documented(client: FlaskClient, path: str, method: str, codes: set[str]) -> None:
    operation = client.get("/api/openapi.json").get_json()["paths"][path][method]
    assert codes <= set(operation["responses"]) and operation["summary"], operation
    if method in ("post", "patch"):
        assert "requestBody" in operation, operation


def test_the_answers_are_the_documented_ones(client: FlaskClient, settings: Settings, landing: Path) -> None:  # noqa: F811
    made = client.post("/api/triggers", json=definition(landing))
    conforms(client, "/api/triggers", "post", made)
    one = f"/api/triggers/{made.get_json()['data']['id']}"
    land(landing, "a.csv")
    tick(settings)
    conforms(client, "/api/triggers", "get", client.get("/api/triggers"))
    conforms(client, "/api/triggers/{trigger_id}", "get", client.get(f"/api/triggers/{FILE_TRIGGER}"))
    conforms(client, "/api/triggers/{trigger_id}", "patch", client.patch(one, json={"paused": True}))
    objects = client.get(f"{one}/objects")
    assert objects.get_json()["data"]["objects"][0]["run_url"], objects.get_json()
    conforms(client, "/api/triggers/{trigger_id}/objects", "get", objects)
    conforms(client, "/api/triggers/{trigger_id}", "delete", client.delete(one))


def test_a_pre_load_strategy_is_taken_and_shown(client: FlaskClient, landing: Path, tmp_path: Path) -> None:  # noqa: F811
    preload = {"strategy": "ack", "ack_path": f"{tmp_path}/acks/{{date}}.ack", "ack_wait_timeout": 60}
    trigger = created(client, landing, preload=preload)
    assert trigger["preload"]["strategy"] == "ack" and trigger["preload"]["ack_path"] == preload["ack_path"]
    assert listed(client)[trigger["id"]]["preload"] == trigger["preload"]
    answer = client.post("/api/triggers", json=definition(landing, preload={"strategy": "ack"}))
    assert answer.status_code == 422 and "preload.ack_path" in answer.get_json()["errors"], answer.get_json()
