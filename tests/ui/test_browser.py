"""The web UI in a real headless Chromium against a real Datanectar: launch from a form, see the run end,
see a bad value's error beside its field, see the run listed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.api.test_logs import BLOCKING_CHAIN
from tests.helpers.browser import expect
from tests.ui.conftest import Site

HELLO = "testchains/hello_luigiworld_chain"
#: how long a run of the hello world may take to be seen DONE (luigi's worker starts in a second or two)
RUN_TIMEOUT_MS = 30_000


def test_launch_the_hello_world_from_its_form_and_see_it_done(page: Any, site: Site, screenshots: Path) -> None:
    page.goto(f"{site.url}/")
    chain = page.locator("#chain-testchains-hello_luigiworld_chain")
    expect(chain).to_contain_text("Read TestS3Task's greeting")
    page.screenshot(path=screenshots / "1-catalog.png", full_page=True)

    chain.get_by_role("link", name="WithDependencyTask", exact=True).click()
    expect(page).to_have_url(f"{site.url}/ui/{HELLO}/WithDependencyTask")
    field = page.locator('.field[data-field="aparam"]')
    expect(field.locator(".required-mark")).to_be_visible()
    expect(field).to_contain_text("Any text; it is appended to the greeting.")
    page.fill("#param-aparam", "from the browser")
    page.screenshot(path=screenshots / "2-form.png", full_page=True)

    page.click("#launch")
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f]{32}$"))
    page.screenshot(path=screenshots / "3-run-active.png", full_page=True)
    expect(page.locator("#run-state .badge")).to_have_text("DONE", timeout=RUN_TIMEOUT_MS)
    steps = page.locator("#steps tbody tr")
    expect(steps).to_have_count(2)
    for task in ("TestS3Task", "WithDependencyTask"):
        expect(steps.filter(has_text=task).locator(".badge")).to_have_text("DONE")
    expect(page.locator("#cancel")).to_have_count(0)
    page.screenshot(path=screenshots / "4-run-done.png", full_page=True)

    output = page.locator("#output-link").get_attribute("href")
    assert output and requests.get(output, timeout=60).text == "hello luigi world, from the browser\n"
    params = page.locator("#params-link").get_attribute("href")
    assert params and "from the browser" in requests.get(params, timeout=60).text
    assert page.locator("#visualiser-link").get_attribute("href").startswith(site.settings.scheduler_url)


def test_a_bad_value_and_a_missing_one_are_shown_beside_their_fields(page: Any, site: Site, screenshots: Path) -> None:
    page.goto(f"{site.url}/ui/etl/sales_chain/AggregateSalesTask")
    # the right controls, defaults filled in
    expect(page.locator("#param-day")).to_have_attribute("type", "date")
    expect(page.locator("#param-rows")).to_have_attribute("type", "number")
    expect(page.locator("#param-rows")).to_have_value("1000")
    expect(page.locator("#param-group_by")).to_have_value("region")
    expect(page.locator("#param-metrics")).to_have_value('["quantity", "revenue"]')

    page.fill("#param-rows", "1.5")
    page.click("#launch")
    rows_error = page.locator('.field[data-field="rows"] .field-error')
    expect(rows_error).to_be_visible()
    expect(rows_error).to_contain_text("not a valid int: '1.5'")
    day_error = page.locator('.field[data-field="day"] .field-error')
    expect(day_error).to_have_text("missing required parameter")
    for name in ("min_quantity", "group_by", "metrics"):
        expect(page.locator(f'.field[data-field="{name}"] .field-error')).to_be_hidden()
    # beside the field: right under its input
    box, under = page.locator("#param-rows").bounding_box(), rows_error.bounding_box()
    assert 0 <= under["y"] - (box["y"] + box["height"]) < 60, (box, under)
    expect(page).to_have_url(f"{site.url}/ui/etl/sales_chain/AggregateSalesTask")
    page.screenshot(path=screenshots / "5-form-errors.png", full_page=True)

    # mended, the errors go and the run starts
    page.fill("#param-day", "2024-01-02")
    page.fill("#param-rows", "50")
    page.fill("#param-metrics", "not json")
    page.click("#launch")
    expect(page.locator('.field[data-field="metrics"] .field-error')).to_contain_text("not a valid list")
    expect(day_error).to_be_hidden()
    expect(rows_error).to_be_hidden()


def test_the_runs_page_lists_a_run_and_follows_its_state(page: Any, site: Site, screenshots: Path) -> None:
    page.goto(f"{site.url}/ui/runs")  # open before the run exists: the list refreshes itself
    answer = requests.post(f"{site.url}/api/chains/{HELLO}/WithDependencyTask", json={"aparam": "listed"}, timeout=60)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["data"]["run_id"]

    row = page.locator(f'tr[data-run-id="{run_id}"]')
    expect(row.locator(".badge")).to_have_text("DONE", timeout=RUN_TIMEOUT_MS)
    expect(row).to_contain_text("WithDependencyTask")
    expect(row).to_contain_text(HELLO)
    expect(row).to_contain_text("aparam=listed")
    expect(page.locator("#runs tbody tr").first).to_have_attribute("data-run-id", run_id)  # newest first
    page.screenshot(path=screenshots / "6-runs.png", full_page=True)

    page.select_option("#filter-job-status", "FAILED")
    page.click("form.filters button")
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_have_count(0)
    page.select_option("#filter-job-status", "DONE")
    page.click("form.filters button")
    page.locator(f'tr[data-run-id="{run_id}"]').get_by_role("link", name="details").click()
    expect(page.locator("#run-state .badge")).to_have_text("DONE")


def test_a_run_page_follows_the_log_of_the_step_running_before_the_task(
    page: Any, site: Site, screenshots: Path, tmp_path: Path
) -> None:
    """While step 1 runs, the page's log links are step 1's, said so; each step row links its own logs."""
    chain = site.settings.chains_dir / "blocking" / "two_step_chain.py"
    chain.parent.mkdir(exist_ok=True)
    chain.write_text(BLOCKING_CHAIN)
    flag = tmp_path / "go"
    url = f"{site.url}/api/chains/blocking/two_step_chain/DownstreamTask"
    answer = requests.post(url, json={"flag": str(flag)}, timeout=60)
    assert answer.status_code == 202, answer.text
    page.goto(f"{site.url}/ui/runs/{answer.json()['data']['run_id']}")

    note = page.locator("#logs-note")
    expect(note).to_have_text(
        "DownstreamTask has not started: these are the logs of UpstreamTask, the step running now",
        timeout=RUN_TIMEOUT_MS,
    )
    expect(page.locator("#stdout-link")).to_have_attribute("href", re.compile(r"/UpstreamTask/[0-9a-f]{32}/out.txt"))
    rows = {task: page.locator("#steps tbody tr").filter(has_text=task) for task in ("UpstreamTask", "DownstreamTask")}
    upstream_stdout = rows["UpstreamTask"].get_by_role("link", name="stdout")
    expect(upstream_stdout).to_have_attribute("href", re.compile("/UpstreamTask/"))
    expect(rows["DownstreamTask"].get_by_role("link", name="stdout")).to_have_count(0)  # not started: no log to link
    page.screenshot(path=screenshots / "8-run-upstream-logs.png", full_page=True)

    flag.touch()
    expect(page.locator("#run-state .badge")).to_have_text("DONE", timeout=RUN_TIMEOUT_MS)
    expect(note).to_be_hidden()
    expect(page.locator("#stdout-link")).to_have_attribute("href", re.compile(r"/DownstreamTask/[0-9a-f]{32}/out.txt"))
    for task, row in rows.items():  # each step row links its own logs once it ran
        expect(row.get_by_role("link", name="stdout")).to_have_attribute("href", re.compile(f"/{task}/"))


def test_swagger_ui_lists_the_operations_with_the_network_blocked(page: Any, site: Site, screenshots: Path) -> None:
    """/api/docs loaded Swagger UI from a CDN: without internet the page was blank."""
    blocked: list[str] = []

    def local_only(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in {"127.0.0.1", "localhost"}:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{site.url}/api/docs")
    operations = page.locator(".opblock-summary-path")
    expect(operations.filter(has_text=re.compile(r"^/api/chainstatus$"))).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    expect(operations.filter(has_text=re.compile(r"^/api/chains/\{chain_type\}/\{chain\}/\{task\}$"))).to_have_count(2)
    expect(page.locator(".opblock-post")).not_to_have_count(0)
    page.screenshot(path=screenshots / "7-swagger-offline.png", full_page=True)
    assert blocked == [], blocked
