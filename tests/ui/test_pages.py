"""The UI's pages through the Flask test client: they render, escape what chains say, give each parameter
the right control, list runs newest first, show a run's links, and answer 404 for what does not exist."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from nectar.auth import digest
from nectar.config import Settings
from nectar.keys import TargetKey
from tests.api.conftest import build_app

HELLO = "testchains/hello_luigiworld_chain"
SALES_FORM = "/ui/etl/sales_chain/AggregateSalesTask"
KINDS_CHAIN = """
import datetime
import enum

import luigi

from nectar import NectarTask


class Colour(enum.Enum):
    red = 1
    green = 2


class KindsTask(NectarTask):
    flag = luigi.BoolParameter(default=True)
    ratio = luigi.FloatParameter(default=0.5)
    month = luigi.MonthParameter(default=datetime.date(2024, 1, 1))
    hour = luigi.DateHourParameter()
    colour = luigi.EnumParameter(enum=Colour)
    pick = luigi.ChoiceListParameter(choices=["a", "b", "c"], default=["a", "c"])
    options = luigi.DictParameter(default={"k": 1})
    note = luigi.OptionalParameter(default=None)
"""


class Elements(HTMLParser):
    """Every element with an id: its tag and attributes; and the options each select has selected."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.selected: dict[str, list[str]] = {}
        self._select: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.by_id[str(found["id"])] = (tag, found)
        if tag == "select":
            self._select = found.get("id")
        elif tag == "option" and self._select and "selected" in found:
            self.selected.setdefault(self._select, []).append(str(found["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def html(client: FlaskClient, url: str, code: int = 200) -> str:
    answer = client.get(url)
    assert answer.status_code == code, answer.get_data(as_text=True)
    assert answer.mimetype == "text/html"
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    return answer.get_data(as_text=True)


def queue(client: FlaskClient, task: str = "WithDependencyTask", **params: str) -> str:
    answer = client.post(f"/api/chains/{HELLO}/{task}", json=params)
    assert answer.status_code == 202, answer.get_json()
    return str(answer.get_json()["data"]["run_id"])


@pytest.mark.parametrize(
    "url", ["/", SALES_FORM, f"/ui/{HELLO}/TestS3Task", "/ui/runs", f"/ui/runs?job_status=DONE&task={HELLO}/TestS3Task"]
)
def test_the_pages_render(client: FlaskClient, url: str) -> None:
    page = html(client, url)
    assert '<script src="/ui/static/nectar.js" defer></script>' in page
    assert 'href="/ui/runs"' in page and 'href="/api/docs"' in page


def test_the_static_files_are_served(client: FlaskClient) -> None:
    for name, mimetype in (("nectar.js", "text/javascript"), ("nectar.css", "text/css")):
        answer = client.get(f"/ui/static/{name}")
        assert answer.status_code == 200 and answer.mimetype == mimetype


def test_the_catalog_lists_types_chains_and_tasks_and_escapes_what_chains_say(
    client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    write_chain(
        "odd/tricky_chain",
        "import luigi\nfrom nectar import NectarTask\n"
        'class TrickyTask(NectarTask):\n    """<script>alert(1)</script>"""\n'
        '    name = luigi.Parameter(default="<img src=x onerror=alert(2)>", description="<i>hi</i>")\n',
    )
    write_chain("odd/broken_chain", "raise ValueError('<b>bad</b>')\n")
    for page in (html(client, "/"), html(client, "/ui/odd/tricky_chain/TrickyTask")):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
        assert "<img src=x" not in page and "<i>hi</i>" not in page
    catalog = html(client, "/")
    assert "&lt;b&gt;bad&lt;/b&gt;" in catalog and "Failed to import" in catalog
    assert f'href="{SALES_FORM}"' in catalog
    assert 'href="/api/chains/etl/sales_chain/AggregateSalesTask"' in catalog
    assert "visualiser" not in catalog


def test_the_catalog_and_a_run_link_the_luigi_visualiser(settings: Settings) -> None:
    client = build_app(settings.replace(scheduler_url="http://127.0.0.1:8082")).test_client()
    assert 'href="http://127.0.0.1:8082/static/visualiser/index.html"' in html(client, "/")
    run = html(client, f"/ui/runs/{queue(client, aparam='x')}")
    assert (
        'href="http://127.0.0.1:8082/static/visualiser/index.html#tab=graph&amp;taskId=testchains.hello_luigiworld_chain.WithDependencyTask_x_'
        in run
    )


def test_each_parameter_gets_the_control_of_its_kind_with_its_default(
    client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    sales = Elements(html(client, SALES_FORM))
    assert sales.by_id["param-day"] == ("input", sales.by_id["param-day"][1])
    day = sales.by_id["param-day"][1]
    assert day["type"] == "date" and "required" in day and day["value"] == ""
    rows = sales.by_id["param-rows"][1]
    assert (rows["type"], rows["step"], rows["value"]) == ("number", "1", "1000") and "required" not in rows
    assert sales.by_id["param-group_by"][0] == "select" and sales.selected["param-group_by"] == ["region"]
    assert sales.by_id["param-metrics"][0] == "textarea"
    assert all(f"error-{name}" in sales.by_id for name in ("day", "rows", "min_quantity", "group_by", "metrics"))

    write_chain("odd/kinds_chain", KINDS_CHAIN)
    page = html(client, "/ui/odd/kinds_chain/KindsTask")
    kinds = Elements(page)
    flag = kinds.by_id["param-flag"][1]
    assert flag["type"] == "checkbox" and "checked" in flag
    assert (kinds.by_id["param-ratio"][1]["type"], kinds.by_id["param-ratio"][1]["step"]) == ("number", "any")
    assert (kinds.by_id["param-month"][1]["type"], kinds.by_id["param-month"][1]["value"]) == ("month", "2024-01")
    assert kinds.by_id["param-hour"][1]["type"] == "text" and "YYYY-MM-DDTHH" in page
    assert kinds.by_id["param-colour"][0] == "select" and "param-colour" not in kinds.selected  # "— choose —"
    assert "multiple" in kinds.by_id["param-pick"][1] and kinds.selected["param-pick"] == ["a", "c"]
    assert kinds.by_id["param-options"][0] == "textarea" and "{&#34;k&#34;: 1}" in page
    assert kinds.by_id["param-note"][1]["value"] == "" and "required" not in kinds.by_id["param-note"][1]


def test_the_runs_page_lists_runs_newest_first_and_filters_them(client: FlaskClient) -> None:
    first, second = queue(client, aparam="one"), queue(client, aparam="two")
    hello = queue(client, "TestS3Task")
    listed = [key for key in Elements(html(client, "/ui/runs")).by_id if key.startswith("run-")]
    assert listed == [f"run-{hello}", f"run-{second}", f"run-{first}"]
    only = html(client, f"/ui/runs?task={HELLO}/TestS3Task&job_status=PENDING")
    assert hello in only and first not in only and second not in only
    assert "No runs match" in html(client, "/ui/runs?job_status=DONE")
    refused = html(client, "/ui/runs?job_status=FAILD&task=not/a/task/at/all", 422)  # not every run: what was wrong
    assert "FAILD" in refused and "is not one of PENDING, RUNNING" in refused and first not in refused
    assert "not/a/task/at/all" in refused and "is not &lt;type&gt;/&lt;chain&gt;/&lt;Task&gt;" in refused
    unread = html(client, "/ui/runs?status=FAILED", 422)  # a filter the page does not read: not every run either
    assert "&#39;status&#39; is not a filter of this page (it takes job_status, task)" in unread and first not in unread


def test_a_queued_run_shows_its_state_links_and_cancel_button(client: FlaskClient) -> None:
    run_id = queue(client, aparam="<b>x</b>")
    page = html(client, f"/ui/runs/{run_id}")
    found = Elements(page).by_id
    assert found["run"][1]["data-active"] == "true" and "cancel" in found
    assert found["run"][1]["data-cancel-url"] == f"/api/runs/{run_id}/cancel"
    assert str(found["run"][1]["data-status-url"]).startswith(
        f"/api/chainstatus?chain=chains/{HELLO}/WithDependencyTask/"
    )
    assert "PENDING" in page and "aparam = &lt;b&gt;x&lt;/b&gt;" in page
    assert "hidden" in found["log-links"][1] and "WithDependencyTask has not started yet: it has no log" in page
    assert "output-link" not in found and "params-link" not in found


def test_a_done_run_links_its_output_and_params(app: Flask, client: FlaskClient) -> None:
    run_id = queue(client, "TestS3Task")
    service = app.extensions["nectar"]
    run = service.runs.claim("test:1", run_id)
    key = TargetKey.parse(run.key)
    service.store.write_text(key, "hello\n")
    service.store.write_text(key.with_file("params.txt"), '{"task_id": "x"}')
    assert service.runs.complete(run_id, run.attempt)
    found = Elements(html(client, f"/ui/runs/{run_id}")).by_id
    assert found["run"][1]["data-active"] == "false" and "cancel" not in found
    for link, text in (("output-link", "hello\n"), ("params-link", '{"task_id": "x"}')):
        download = client.get(found[link][1]["href"])
        assert download.status_code == 200 and download.get_data(as_text=True) == text


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/ui/runs/0123456789abcdef0123456789abcdef", "no run 0123456789abcdef0123456789abcdef"),
        ("/ui/runs/%3Cscript%3E", "no run &lt;script&gt;"),
        ("/ui/etl/sales_chain/NoSuchTask", "no task NoSuchTask in chain etl/sales_chain"),
        ("/ui/etl/no_such_chain/AggregateSalesTask", "no chain etl/no_such_chain"),
        ("/ui/odd/broken_chain/AnyTask", "failed to import"),
    ],
)
def test_what_does_not_exist_is_a_404_page(
    client: FlaskClient, write_chain: Callable[[str, str], Path], url: str, says: str
) -> None:
    write_chain("odd/broken_chain", "raise ValueError('nope')\n")
    assert says in html(client, url, 404)


def test_the_pages_stay_out_of_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert "/" in paths and not [path for path in paths if path.startswith("/ui")]


def test_a_page_asks_for_the_token_only_when_the_api_wants_one(settings: Settings) -> None:
    plain = build_app(settings).test_client()
    assert "api-token" not in html(plain, "/")
    secured = build_app(settings.replace(api_tokens=f"{digest('t0ken').hex()}:write", auth_reads=False)).test_client()
    assert 'id="api-token"' in html(secured, "/")
