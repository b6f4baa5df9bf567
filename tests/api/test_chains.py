"""The catalog endpoints and task submission: shapes, 404s, parameter validation, idempotency."""

from __future__ import annotations

import gc
import html
import json
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.schemas import SubmissionEnvelope, SubmissionSchema
from nectar.config import Settings
from nectar.errors import InvalidParameters
from nectar.keys import TargetKey
from nectar.service import Nectar
from tests.conftest import SALES_DAY_PARAM

SALES = "/api/chains/etl/sales_chain/AggregateSalesTask"
HELLO = "/api/chains/testchains/hello_luigiworld_chain"


def test_catalog_lists_types_chains_tasks_with_absolute_hrefs(
    client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("broken/bad_chain", "raise RuntimeError('boom at import')\n")
    data = client.get("/api/chains").get_json()["data"]
    types = {t["name"]: t for t in data}
    assert set(types) == {"broken", "etl", "testchains"}
    assert types["etl"]["api_href"] == "http://localhost/api/chains/etl"
    bad = types["broken"]["chains"][0]
    assert bad["name"] == "bad_chain" and bad["tasks"] == []
    assert "RuntimeError: boom at import" in bad["error"]
    sales = types["etl"]["chains"][0]
    assert sales["api_href"] == "http://localhost/api/chains/etl/sales_chain"
    tasks = {t["name"]: t for t in sales["tasks"]}
    assert set(tasks) == {"AggregateSalesTask", "CleanSalesTask", "GenerateSalesTask"}
    assert tasks["AggregateSalesTask"]["api_href"] == f"http://localhost{SALES}"
    assert tasks["AggregateSalesTask"]["requires"] == ["CleanSalesTask"]


@pytest.mark.parametrize("made", ["empty", "misnamed", "missing"])
def test_a_catalog_of_no_chain_says_where_it_looked_and_what_a_chain_is_named(
    settings: Settings, tmp_path: Path, client_for: Callable[[Settings], FlaskClient], made: str
) -> None:
    """A newcomer's first listing: before, ``data: []`` and ``message: success``, nothing said of where the chains
    are looked for or what their files are called (the API, ``nectar chains`` and the UI's home alike)."""
    chains = tmp_path / "my_chains"
    if made != "missing":
        chains.mkdir()
    if made == "misnamed":
        (chains / "etl").mkdir()
        (chains / "etl" / "sales.py").write_text("")  # not <name>_chain.py: no chain
        (chains / "etl" / "my-sales_chain.py").write_text("")
    client = client_for(settings.replace(chains_dir=chains))
    answer = client.get("/api/chains").get_json()
    page = client.get("/").get_data(as_text=True)

    assert answer["data"] == []
    there = " (no such folder)" if made == "missing" else ""
    said = f"no chains under {chains}{there}: a chain is a file &lt;type&gt;/&lt;name&gt;_chain.py in it"
    passed_over = ", made of [A-Za-z0-9_] (passed over: etl/my-sales_chain.py)" if made == "misnamed" else ""
    assert answer["message"] == html.unescape(said + passed_over)
    assert f"N{said[1:]}{passed_over}." in page


def test_a_broken_chain_is_described_with_its_error(
    client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain("broken/bad_chain", "import no_such_module_here\n")
    data = client.get("/api/chains/broken/bad_chain").get_json()["data"]
    assert "no_such_module_here" in data["error"]
    answer = client.get("/api/chains/broken/bad_chain/AnyTask")
    assert answer.status_code == 404 and "failed to import" in answer.get_json()["message"]


def test_task_shows_params_with_kind_default_required_description_choices(client: FlaskClient) -> None:
    data = client.get(SALES).get_json()["data"]
    assert data["doc"].startswith("Sum quantity and revenue")
    params = {p["name"]: p for p in data["params"]}
    assert params["day"] == SALES_DAY_PARAM
    assert sorted(params["group_by"]["choices"]) == ["product", "region"]
    assert params["group_by"]["default"] == "region"
    assert params["metrics"]["kind"] == "list" and params["metrics"]["default"] == ["quantity", "revenue"]


def test_chain_type_lists_its_chains(client: FlaskClient) -> None:
    data = client.get("/api/chains/testchains").get_json()["data"]
    assert data["name"] == "testchains"
    assert [c["name"] for c in data["chains"]] == ["hello_luigiworld_chain"]


@pytest.mark.parametrize(
    ("method", "url", "named"),
    [
        ("get", "/api/chains/nope", "nope"),
        ("get", "/api/chains/etl/nope_chain", "etl/nope_chain"),
        ("get", "/api/chains/nope/sales_chain", "nope/sales_chain"),
        ("get", "/api/chains/etl/sales_chain/NopeTask", "NopeTask"),
        ("post", "/api/chains/etl/sales_chain/NopeTask", "NopeTask"),
        ("post", "/api/chains/etl/nope_chain/AggregateSalesTask", "etl/nope_chain"),
        ("get", "/api/nothing/here", "Not Found"),
        ("get", f"{SALES}/nope", "no such URL"),
    ],
)
def test_unknown_things_are_404_naming_them(client: FlaskClient, method: str, url: str, named: str) -> None:
    answer = getattr(client, method)(url)
    assert answer.status_code == 404
    body = answer.get_json()
    assert body["data"] is None and named in body["message"]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/api/chains/testchains/TestS3Task", "no chain testchains/TestS3Task (chains of testchains: hello_luigiworld"),
        ("/api/chains/testchains/hello_luigiworld_chain", "no task named in chain testchains/hello_luigiworld_chain"),
        ("/api/chains/testchains", "no chain or task named"),
        ("/api/chains/nope", "no chain type nope"),
        ("/api/chains", "no task named"),
        ("/api/chains/testchains/hello_luigiworld_chain/TestS3Task/out.txt", "no such URL"),
    ],
)
def test_a_post_to_a_url_short_of_a_task_is_404_naming_what_is_missing_and_the_url_form(
    client: FlaskClient, app: Flask, url: str, named: str
) -> None:
    """The seed's own example missed the chain segment: it answered 405 Method Not Allowed."""
    for sent in (url, f"{url}/"):
        answer = client.post(sent, json={})
        assert answer.status_code == 404, (sent, answer.get_json())
        message = answer.get_json()["message"]
        assert named in message and "/api/chains/<type>/<chain>/<Task>" in message
    assert app.extensions["nectar"].runs.count() == 0


def test_a_url_that_exists_for_another_method_stays_405(client: FlaskClient) -> None:
    for url in (f"{SALES}/batch", f"{SALES}/batch/"):
        assert client.get(url).status_code == 405
    assert client.put(SALES).status_code == 405


def test_a_trailing_slash_on_a_task_url_is_the_same_url(client: FlaskClient, app: Flask) -> None:
    described = client.get(f"{SALES}/")
    assert described.status_code == 200 and described.get_json()["data"]["name"] == "AggregateSalesTask"
    # no redirect (a client may resend a redirected POST without its body): the body is read where it was sent
    queued = client.post(f"{SALES}/", json={"day": "2024-02-03"})
    assert queued.status_code == 202, queued.get_json()
    key = TargetKey.parse(queued.get_json()["data"]["key"])
    assert app.extensions["nectar"].runs.latest(key.path).params["day"] == "2024-02-03"


@pytest.mark.parametrize(
    ("query", "body", "field", "says"),
    [
        ("day=2024-13-01", None, "day", "not a valid date"),
        ("day=2024-01-01&group_by=x", None, "group_by", "not a valid choice (one of "),
        ("day=2024-01-01&colour=red", None, "colour", "unknown parameter"),
        ("", None, "day", "missing required parameter"),
        ("day=2024-01-01&rows=many", None, "rows", "not a valid int"),
        ("", {"day": "2024-01-01", "rows": 1.5}, "rows", "expected an integer"),
        ("", {"day": "2024-01-01", "metrics": "quantity"}, "metrics", "not a valid list"),
        ("", {"day": "2024-01-01", "group_by": ["region"]}, "group_by", "got a JSON list"),
        ("", {"day": None}, "day", "must not be null"),
        ("", {"day": True}, "day", "expected a date"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: FlaskClient, app: Flask, query: str, body: dict | None, field: str, says: str
) -> None:
    answer = client.post(f"{SALES}?{query}", json=body)
    assert answer.status_code == 422
    errors = answer.get_json()["errors"]
    assert says in " ".join(errors[field]), errors
    assert app.extensions["nectar"].runs.count() == 0


@pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b'"day"', b'{"day": "\xff"}'])
def test_a_body_that_is_not_a_json_object_is_422(client: FlaskClient, body: bytes) -> None:
    answer = client.post(f"{SALES}?day=2024-01-01", data=body, content_type="application/json")
    assert answer.status_code == 422
    assert "JSON object" in answer.get_json()["errors"]["_body"][0]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_body_with_a_number_json_does_not_have_is_422_naming_it(
    client: FlaskClient, app: Flask, constant: str
) -> None:
    """Python's json reads NaN and Infinity, which RFC 8259 does not have: a str parameter took NaN as "nan", a
    list or dict parameter kept it and luigi wrote it back as no JSON reader can read it. Refused, named."""
    said = [f"expected a finite number, got {constant} (JSON has no {constant.lstrip('-')})"]
    bodies = {
        "group_by": f'{{"day": "2024-01-01", "group_by": {constant}}}',
        "metrics": f'{{"day": "2024-01-01", "metrics": [1, {{"a": [{constant}]}}]}}',
        "_body": f"[{constant}]",
    }
    for name, body in bodies.items():
        answer = client.post(SALES, data=body, content_type="application/json")
        assert answer.status_code == 422, answer.get_json()
        assert answer.get_json()["errors"] == {name: said}, body
    assert app.extensions["nectar"].runs.count() == 0


def test_errors_name_every_bad_field_at_once(client: FlaskClient) -> None:
    answer = client.post(SALES, json={"group_by": "x", "rows": "many"})
    assert set(answer.get_json()["errors"]) == {"day", "group_by", "rows"}


def test_the_api_and_nectar_run_name_bad_parameters_alike(client: FlaskClient, app: Flask) -> None:
    """One validator for both paths: a 422's errors are those of the InvalidParameters ``nectar run`` prints."""
    values = {"colour": "red", "rows": "many", "group_by": "x"}
    answer = client.post(SALES, json=values)
    task = app.extensions["nectar"].catalog.task("etl", "sales_chain", "AggregateSalesTask")
    with pytest.raises(InvalidParameters) as caught:
        task.instantiate(values)
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == caught.value.errors
    assert set(caught.value.errors) == {"colour", "day", "group_by", "rows"}


def _submitted_key(nectar: Nectar, values: dict) -> str:
    task = nectar.catalog.task("etl", "sales_chain", "AggregateSalesTask")
    return task.key_of(task.instantiate(values)).path


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ('day=2024-02-03&rows=7&metrics=["revenue"]', None),
        ("", {"day": "2024-02-03", "rows": 7, "metrics": ["revenue"]}),
        ("day=1999-01-01&rows=7", {"day": "2024-02-03", "metrics": ["revenue"]}),
    ],
    ids=["query-string", "json-body", "both-body-wins"],
)
def test_submission_queues_a_run_and_answers_its_status_url(
    client: FlaskClient, app: Flask, query: str, body: dict | None
) -> None:
    nectar = app.extensions["nectar"]
    answer = client.post(f"{SALES}?{query}", json=body)
    assert answer.status_code == 202
    data = answer.get_json()["data"]
    key = _submitted_key(nectar, {"day": "2024-02-03", "rows": "7", "metrics": '["revenue"]'})
    assert data["key"] == key
    assert data["status_url"] == f"http://localhost/api/chainstatus?chain={key}"
    assert data["job_status"] == "PENDING" and data["created"] is True and data["resource_url"] is None
    assert data["expires_in"] == nectar.settings.url_expiry
    run = nectar.runs.get(data["run_id"])
    assert run is not None and run.key == key
    status = client.get(data["status_url"]).get_json()["data"]
    assert status["job_status"] == "PENDING" and status["run_id"] == data["run_id"]
    TargetKey.parse(data["key"])


def test_identical_concurrent_submissions_share_one_run(app: Flask) -> None:
    def submit(_: int) -> tuple[int, str, bool]:
        answer = app.test_client().post(f"{HELLO}/WithDependencyTask?aparam=together")
        data = answer.get_json()["data"]
        return answer.status_code, data["run_id"], data["created"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(submit, range(16)))
    assert {code for code, _, _ in answers} == {202}
    assert len({run_id for _, run_id, _ in answers}) == 1
    assert sum(created for _, _, created in answers) == 1
    assert app.extensions["nectar"].runs.count() == 1


@pytest.mark.parametrize("case", ["queued", "active", "done"])
def test_a_submission_answers_exactly_the_documented_fields_without_a_schema_dump(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """The view shapes its answer itself: what SubmissionEnvelope documents, each value of its JSON type, and
    marshmallow never walks it (a dump of the envelope per submission was a tenth of its cost)."""
    url = f"{HELLO}/WithDependencyTask?aparam=shaped"
    first = client.post(url).get_json()["data"]
    if case == "done":
        app.extensions["nectar"].store.write_text(TargetKey.parse(first["key"]), "done\n")
        app.extensions["nectar"].runs.cancel(first["run_id"])
    dumped: list[type] = []
    dump = ma.Schema.dump

    def counted(schema: ma.Schema, *args: Any, **kwargs: Any) -> Any:
        dumped.append(type(schema))
        return dump(schema, *args, **kwargs)

    monkeypatch.setattr(ma.Schema, "dump", counted)
    answer = client.post(url) if case != "queued" else client.post(url.replace("shaped", "fresh"))
    body = answer.get_json()
    assert dumped == []
    monkeypatch.undo()
    assert answer.status_code == (200 if case == "done" else 202) == body["status"]
    data = body["data"]
    assert data["created"] is (case == "queued")
    fields = {"key", "status_url", "created", "expires_in", "job_status", "run_id", "resource_url"}
    assert set(data) == fields | ({"resource_note", "outputs"} if case == "done" else set())
    assert set(data) <= set(SubmissionSchema().fields)
    as_documented = SubmissionEnvelope().dump(body)  # every value already of its documented JSON type
    assert json.dumps(as_documented, sort_keys=True) == json.dumps(body, sort_keys=True)


def test_a_submitted_task_is_not_kept_by_the_process(app: Flask) -> None:
    """luigi keeps every task it makes, by its parameters, for the process's life: an API worker kept one per distinct
    submission. A task made for a submission is gone once it is answered."""
    nectar = app.extensions["nectar"]
    info = nectar.task("testchains", "hello_luigiworld_chain", "WithDependencyTask")
    instance = info.instantiate({"aparam": "forgotten"})
    assert nectar.submit_task(info, instance).created
    made = weakref.ref(instance)
    del instance
    gc.collect()
    assert made() is None


COUNTED_CHAIN = '''
import luigi


class CountedTask(luigi.Task):
    """Two outputs; counts how often it is asked for them."""

    name = luigi.Parameter()

    def output(self):
        self.outputs_made = getattr(self, "outputs_made", 0) + 1
        return [luigi.LocalTarget({folder!r} + "/first.txt"), luigi.LocalTarget({folder!r} + "/" + self.name)]
'''


@pytest.mark.parametrize(("second", "queued"), [("missing.txt", True), ("first.txt", False)])
def test_a_submission_asks_its_task_for_its_outputs_once(
    app: Flask, write_chain: Callable[[str, str], Path], tmp_path: Path, second: str, queued: bool
) -> None:
    """Whether the outputs exist is answered as luigi's complete() answers it (every one exists), from one call of
    output(): a NectarTask's builds its target's path, and was asked twice."""
    (tmp_path / "first.txt").write_text("made\n")
    write_chain("plain/counted_chain", COUNTED_CHAIN.format(folder=str(tmp_path)))
    nectar = app.extensions["nectar"]
    info = nectar.task("plain", "counted_chain", "CountedTask")
    instance = info.instantiate({"name": second})
    submission = nectar.submit_task(info, instance)
    assert (submission.created, submission.done) == (queued, not queued)
    assert instance.outputs_made == 1
