"""``/api/schedules`` through the real app: made, refused naming the field, paused, removed, backfilled, and the
runs a schedule makes naming it in ``/api/runs`` and ``/api/chainstatus``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.schedules.loop import ScheduleLoop
from nectar.service import Nectar
from tests.api.conftest import build_app
from tests.clock import Clock
from tests.schedules.conftest import utc

#: the schedule DailyTask declares in tests/schedules/conftest.py's chain file
FILE_SCHEDULE = "daily.sales_chain.DailyTask.0"
#: a schedule made over HTTP: SlotTask every hour, its ``when`` the fire time
HOURLY = {
    "task": "daily/sales_chain/SlotTask",
    "cron": "0 * * * *",
    "timezone": "Europe/Paris",
    "params": {"label": "hourly"},
    "fire_time_param": "when",
    "overlap": "skip",
}


@pytest.fixture
def client(settings: Settings, nectar: Nectar, clock: Clock) -> FlaskClient:
    """The app's client, its schedules reading the test's clock (``nectar`` wrote the chain file)."""
    app = build_app(settings)
    app.extensions["nectar"].schedules.clock = clock.time
    return app.test_client()


def created(client: FlaskClient, **changes: Any) -> dict[str, Any]:
    answer = client.post("/api/schedules", json={**HOURLY, **changes})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["data"]


def listed(client: FlaskClient) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/schedules")
    assert answer.status_code == 200, answer.get_json()
    return {schedule["id"]: schedule for schedule in answer.get_json()["data"]}


def test_a_schedule_is_made_with_its_next_five_fires(client: FlaskClient) -> None:
    data = created(client)
    assert data["source"] == "api" and not data["paused"] and data["last_fire"] is None
    assert {name: data[name] for name in HOURLY} == HOURLY
    assert data["interval_s"] is None and data["catchup"] == "latest" and data["misfire_grace_s"] == 60
    # 2026-06-01T00:00Z is 02:00 in Paris (CEST): the next hours, with their offset
    assert data["next_fires"] == [f"2026-06-01T0{hour}:00:00+02:00" for hour in range(3, 8)]
    assert client.get(f"/api/schedules/{data['id']}").get_json()["data"] == data
    assert listed(client)[data["id"]] == data


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"task": "daily/sales_chain/NoSuchTask"}, "task"),
        ({"task": "daily/no_chain/SlotTask"}, "task"),
        ({"task": "DailyTask"}, "task"),
        ({"fire_time_param": None}, "params.when"),  # a required parameter nothing gives
        ({"task": "daily/sales_chain/DailyTask", "fire_time_param": None, "params": {"date": "soon"}}, "params.date"),
        ({"fire_time_param": "label", "params": {"when": "2026-01-01T000000"}}, "fire_time_param"),
        ({"colour": "red"}, "colour"),
        ({"start": "yesterday"}, "start"),
        ({"cron": None, "interval_s": 0}, "interval_s"),
        ({"catchup": "some"}, "catchup"),
        ({"paused": "yes"}, "paused"),
        ({"params": []}, "params"),
        ({"cron": None, "interval_s": 10**12}, "interval_s"),  # its first fire beyond any calendar
        ({"max_active": 10**40}, "max_active"),
        ({"misfire_grace_s": float("inf")}, "misfire_grace_s"),
        ({"start": "9999-12-31"}, "start"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_stored(client: FlaskClient, changes: dict, field: str) -> None:
    before = listed(client)
    answer = client.post("/api/schedules", json={**HOURLY, **changes})
    assert answer.status_code == 422, answer.get_json()
    assert field in answer.get_json()["errors"], answer.get_json()
    assert listed(client) == before


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_no_json_object_is_refused(client: FlaskClient, body: bytes) -> None:
    answer = client.post("/api/schedules", data=body, content_type="application/json")
    assert answer.status_code == 422 and "_body" in answer.get_json()["errors"], answer.get_json()


def test_a_file_schedule_is_listed_paused_over_http_and_edited_only_in_its_file(client: FlaskClient) -> None:
    schedule = listed(client)[FILE_SCHEDULE]
    assert schedule["source"] == "file" and schedule["path"] == "daily/sales_chain.py"
    assert (
        schedule["task"] == "daily/sales_chain/DailyTask" and schedule["next_fires"][0] == "2026-06-01T03:00:00+02:00"
    )
    edit = client.patch(f"/api/schedules/{FILE_SCHEDULE}", json={"cron": "0 4 * * *"})
    assert edit.status_code == 409 and "daily/sales_chain.py" in edit.get_json()["message"], edit.get_json()
    paused = client.patch(f"/api/schedules/{FILE_SCHEDULE}", json={"paused": True})
    assert paused.status_code == 200, paused.get_json()
    assert paused.get_json()["data"]["paused"] and paused.get_json()["data"]["next_fires"] == []
    assert listed(client)[FILE_SCHEDULE]["paused"]
    resumed = client.patch(f"/api/schedules/{FILE_SCHEDULE}", json={"paused": False}).get_json()["data"]
    assert not resumed["paused"] and len(resumed["next_fires"]) == 5
    removed = client.delete(f"/api/schedules/{FILE_SCHEDULE}")
    assert removed.status_code == 409 and FILE_SCHEDULE in listed(client), removed.get_json()


def test_a_schedule_made_here_is_changed_and_removed(client: FlaskClient) -> None:
    schedule = created(client)
    changed = client.patch(f"/api/schedules/{schedule['id']}", json={"cron": "30 6 * * *"})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["data"]["next_fires"][0] == "2026-06-01T06:30:00+02:00"
    refused = client.patch(f"/api/schedules/{schedule['id']}", json={"cron": "every day"})
    assert refused.status_code == 422 and "cron" in refused.get_json()["errors"]
    late_start = client.patch(f"/api/schedules/{schedule['id']}", json={"start": "2026-07-01"})
    assert late_start.status_code == 422 and "start" in late_start.get_json()["errors"]
    assert listed(client)[schedule["id"]]["cron"] == "30 6 * * *"
    removed = client.delete(f"/api/schedules/{schedule['id']}")
    assert removed.status_code == 200 and removed.get_json()["data"]["id"] == schedule["id"]
    assert schedule["id"] not in listed(client)
    gone = client.get(f"/api/schedules/{schedule['id']}")
    assert gone.status_code == 404 and schedule["id"] in gone.get_json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("get", "/fires"),
        ("post", "/backfill?start=2026-05-01&end=2026-05-02"),
    ],
)
def test_an_unknown_schedule_is_a_404_naming_it(client: FlaskClient, method: str, path: str) -> None:
    answer = getattr(client, method)(f"/api/schedules/nosuch{path}", json={"paused": True})
    assert answer.status_code == 404 and "nosuch" in answer.get_json()["message"], answer.get_json()


def test_a_run_made_by_a_schedule_names_it_everywhere(client: FlaskClient, loop: ScheduleLoop, clock: Clock) -> None:
    loop.tick()  # the file's schedule is seen: it fires from now on
    clock.now = utc("2026-06-01T01:00:01")  # 03:00 in Paris, a second late
    assert loop.tick().get("queued") == 1
    runs = client.get("/api/runs").get_json()["data"]
    assert [(run["schedule_id"], run["fire_time"]) for run in runs] == [(FILE_SCHEDULE, "2026-06-01T01:00:00+00:00")]
    assert runs[0]["params"] == {"date": "2026-05-31"}
    one = client.get(f"/api/runs/{runs[0]['run_id']}").get_json()["data"]
    assert (one["schedule_id"], one["fire_time"]) == (FILE_SCHEDULE, "2026-06-01T01:00:00+00:00")
    status = client.get(runs[0]["status_url"]).get_json()["data"]
    assert (status["schedule_id"], status["fire_time"]) == (FILE_SCHEDULE, "2026-06-01T01:00:00+00:00")
    last = listed(client)[FILE_SCHEDULE]["last_fire"]
    assert last["state"] == "queued" and last["run_id"] == runs[0]["run_id"] and last["job_status"] == "PENDING"


def test_a_submitted_run_names_no_schedule(client: FlaskClient) -> None:
    submitted = client.post("/api/chains/daily/sales_chain/SlotTask", json={"when": "2026-01-01T000000"})
    assert submitted.status_code == 202, submitted.get_json()
    status = client.get(submitted.get_json()["data"]["status_url"]).get_json()["data"]
    run = client.get("/api/runs").get_json()["data"][0]
    assert (status["schedule_id"], status["fire_time"], run["schedule_id"], run["fire_time"]) == (None,) * 4


def test_a_backfill_answers_at_once_with_its_fires_and_its_progress(client: FlaskClient) -> None:
    schedule = created(client, cron="0 12 * * *", max_active=2, overlap="queue")
    answer = client.post(f"/api/schedules/{schedule['id']}/backfill?start=2026-05-01&end=2026-05-05T23:00")
    assert answer.status_code == 202, answer.get_json()
    data = answer.get_json()["data"]
    assert (data["fire_times"], data["existing"], data["counts"]) == (
        5,
        0,
        {"queued": 2, "done": 0, "skipped": 0, "held": 3},
    )
    assert sorted(fire["fire_time"] for fire in data["fires"]) == [
        f"2026-05-0{day}T12:00:00+02:00" for day in range(1, 6)
    ]
    queued = [fire for fire in data["fires"] if fire["state"] == "queued"]
    assert all(fire["run_id"] and fire["job_status"] == "PENDING" for fire in queued), queued
    assert data["job_statuses"] == {"PENDING": 2}
    progress = client.get(data["progress_url"])
    assert progress.status_code == 200, progress.get_json()
    assert progress.get_json()["data"] == {
        name: data[name] for name in ("schedule_id", "backfill_id", "counts", "job_statuses", "fires")
    }
    again = client.post(f"/api/schedules/{schedule['id']}/backfill?start=2026-05-01&end=2026-05-05T23:00")
    assert again.status_code == 202 and again.get_json()["data"]["existing"] == 5, again.get_json()
    recent = client.get(f"/api/schedules/{schedule['id']}/fires").get_json()["data"]
    times = [fire["fire_time"] for fire in recent["fires"]]
    assert times == sorted(times, reverse=True) and len(times) == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=last+week&end=2026-05-02", "start"),
        ("start=2026-05-01&end=soon", "end"),
        ("start=2026-05-03T12:00&end=2026-05-02", "end"),
        ("start=2026-05-01&end=2027-01-01", "end"),
        ("end=2026-05-02", "start"),
        ("start=0001-01-01&end=0001-01-03", "start"),
    ],
)
def test_a_bad_backfill_range_is_named(client: FlaskClient, query: str, field: str) -> None:
    schedule = created(client)
    answer = client.post(f"/api/schedules/{schedule['id']}/backfill?{query}")
    assert answer.status_code == 422 and field in answer.get_json()["errors"], answer.get_json()
    assert client.get(f"/api/schedules/{schedule['id']}/fires").get_json()["data"]["fires"] == []


def test_writes_need_a_write_token(settings: Settings, nectar: Nectar) -> None:
    from nectar.auth import new_token

    read, read_digest = new_token()
    app = build_app(settings.replace(api_tokens=f"{read_digest}:read:reader"))
    client = app.test_client()
    assert client.get("/api/schedules").status_code == 401
    headers = {"Authorization": f"Bearer {read}"}
    assert client.get("/api/schedules", headers=headers).status_code == 200
    assert client.post("/api/schedules", json=HOURLY, headers=headers).status_code == 403
    assert client.patch(f"/api/schedules/{FILE_SCHEDULE}", json={"paused": True}, headers=headers).status_code == 403


def test_the_times_are_iso_with_the_zone_offset(client: FlaskClient) -> None:
    data = created(client, timezone="America/New_York")
    offsets = {datetime.fromisoformat(fire).utcoffset() for fire in data["next_fires"]}
    assert offsets == {timedelta(hours=-4)}  # EDT in June


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/schedules", "get", {"200", "422"}),
        ("/api/schedules", "post", {"201", "401", "403", "422"}),
        ("/api/schedules/{schedule_id}", "get", {"200", "404"}),
        ("/api/schedules/{schedule_id}", "patch", {"200", "404", "409", "422"}),
        ("/api/schedules/{schedule_id}", "delete", {"200", "404", "409"}),
        ("/api/schedules/{schedule_id}/backfill", "post", {"202", "404", "422"}),
        ("/api/schedules/{schedule_id}/fires", "get", {"200", "404", "422"}),
    ],
)
def test_every_endpoint_is_documented(client: FlaskClient, path: str, method: str, codes: set[str]) -> None:
    operation = client.get("/api/openapi.json").get_json()["paths"][path][method]
    assert codes <= set(operation["responses"]) and operation["summary"], operation
    if method in ("post", "patch") and "backfill" not in path:
        assert "requestBody" in operation, operation


def test_runs_and_statuses_document_their_schedule(client: FlaskClient) -> None:
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    for name in ("Run", "RunDetail", "Status"):
        assert {"schedule_id", "fire_time"} <= set(schemas[name]["properties"]), name


def conforms(client: FlaskClient, path: str, method: str, answer: Any) -> None:
    """``answer`` matches the schema the OpenAPI document gives for its status (what a client generated from it
    expects): the fuzz test reaches no real schedule, so these answers are held to it here."""
    spec = client.get("/api/openapi.json").get_json()
    documented = spec["paths"][path][method]["responses"][str(answer.status_code)]
    schema = {**documented["content"]["application/json"]["schema"], "components": spec["components"]}
    import openapi_schema_validator  # here, not with the module (~0.25 s of CPU): every xdist worker collects it

    openapi_schema_validator.validate(answer.get_json(), schema, cls=openapi_schema_validator.OAS30Validator)


def test_the_answers_are_the_documented_ones(client: FlaskClient, loop: ScheduleLoop, clock: Clock) -> None:
    loop.tick()
    clock.now = utc("2026-06-01T01:00:01")
    loop.tick()  # the file's schedule has a last fire, with its run
    made = client.post("/api/schedules", json={**HOURLY, "max_active": 1, "starting_deadline_s": 30})
    conforms(client, "/api/schedules", "post", made)
    one = f"/api/schedules/{made.get_json()['data']['id']}"
    conforms(client, "/api/schedules", "get", client.get("/api/schedules"))
    conforms(client, "/api/schedules/{schedule_id}", "get", client.get(f"/api/schedules/{FILE_SCHEDULE}"))
    conforms(client, "/api/schedules/{schedule_id}", "patch", client.patch(one, json={"paused": True}))
    backfill = client.post(f"{one}/backfill?start=2026-05-31T10:00&end=2026-05-31T12:00")
    assert backfill.status_code == 202, backfill.get_json()
    conforms(client, "/api/schedules/{schedule_id}/backfill", "post", backfill)
    fires = client.get(f"/api/schedules/{FILE_SCHEDULE}/fires")
    assert fires.get_json()["data"]["fires"][0]["run_url"], fires.get_json()
    conforms(client, "/api/schedules/{schedule_id}/fires", "get", fires)
    conforms(client, "/api/schedules/{schedule_id}", "delete", client.delete(one))
