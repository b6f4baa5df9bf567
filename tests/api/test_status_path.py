"""The status lookup's path in front of Flask (api/status_path.py): the bytes and headers of Flask's view, the same
checks refusing through it, its answers timed, and every other case answered by Flask itself."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, Request, appcontext_pushed, request_started
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.routing import Rule
from werkzeug.test import Client, EnvironBuilder, TestResponse

from api.fast_path import Asked, FastPath
from api.status_path import ENDPOINT, PATHS, StatusPath, query_value
from benchmarks.population import TASK, Probe, fill_registry, fill_store, finished_run
from nectar.config import Settings
from nectar.registry import Step
from nectar.registry.sqlite import SQLiteRunStore
from tests.api.conftest import build_app
from tests.api.test_auth import READER, WRITER, bearer, entry
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

STATUS = "/api/chainstatus"


def asked(environ: dict[str, Any]) -> Asked:
    """A lookup of ``environ`` as the path in front of Flask hands it to its route."""
    return Asked(Flask(__name__), environ, Rule(STATUS, endpoint=ENDPOINT), {})


def lookup(n: int) -> str:
    return f"{STATUS}?chain={Probe(n).key.path}"


@pytest.fixture
def probes(settings: Settings) -> None:
    """Probe 0 DONE with its output; probe 1 DONE in the registry, its output gone."""
    fill_registry(settings.registry_path, range(2))
    fill_store(settings.local_targets_dir, range(1))


@contextmanager
def dispatches(app: Flask) -> Iterator[list[str]]:
    """The paths Flask dispatched to a view meanwhile (``request_started``): the path in front of it sends none."""
    seen: list[str] = []
    with request_started.connected_to(lambda sender, **_: seen.append(_request_path()), app):
        yield seen


def _request_path() -> str:
    from flask import request

    return request.path


def both(app: Flask) -> tuple[Client, Client]:
    """A client of the app as served (the path in front of Flask) and one of Flask's own WSGI app behind it."""
    served = app.wsgi_app
    assert isinstance(served, FastPath)
    return Client(served), Client(served.flask_wsgi)


def same_second(fast: Client, flask: Client, path: str, **kwargs: Any) -> list[tuple[TestResponse, TestResponse]]:
    """Both answers to ``path``, asked within one second (a download URL's expiry counts whole seconds): Flask's is
    taken between two of the path in front's that are identical. Every pair asked, the last one so asked."""
    found: list[tuple[TestResponse, TestResponse]] = []

    def asked() -> bool:
        first, behind, second = fast.get(path, **kwargs), flask.get(path, **kwargs), fast.get(path, **kwargs)
        found.append((second, behind))
        return first.get_data() == second.get_data()

    wait_until(asked, timeout=60)
    return found


@pytest.mark.parametrize("n", [0, 1], ids=["done with its output", "output gone"])
@pytest.mark.parametrize(
    ("suffix", "host"),
    [("", "localhost"), ("/", "127.0.0.1:5000"), ("&unknown=1", "[::1]:8080")],
    ids=["plain", "trailing slash", "another argument"],
)
def test_the_path_in_front_answers_the_bytes_and_headers_of_the_view(
    app: Flask, probes: None, n: int, suffix: str, host: str
) -> None:
    fast, flask = both(app)
    path = lookup(n).replace(STATUS, STATUS + "/") if suffix == "/" else lookup(n) + suffix
    flask.get(path, headers={"Host": host})  # its links built once by url_for (see the test after)
    with dispatches(app) as dispatched:
        pairs = same_second(fast, flask, path, headers={"Host": host})
    ours, theirs = pairs[-1]

    assert ours.status_code == theirs.status_code == 200
    assert ours.headers.to_wsgi_list() == theirs.headers.to_wsgi_list()
    assert ours.get_data() == theirs.get_data()
    assert ours.get_json()["data"]["run_url"].startswith(f"http://{host}/api/runs/")
    # Flask dispatched its own answers to the view, and none of the path in front's (two for each of Flask's)
    assert dispatched == [STATUS + ("/" if suffix == "/" else "")] * len(pairs)


def test_the_first_lookup_by_a_host_is_flask_s_which_builds_its_links(app: Flask, probes: None) -> None:
    """A link is built by url_for once per endpoint, Host and root, in Flask's request context: the path in front
    hands over a lookup whose links were never built, and answers the next one itself."""
    fast, _ = both(app)
    host = {"Host": f"[::1]:{uuid.uuid4().int % 50000 + 10000}"}  # a Host no test asked by before
    with dispatches(app) as dispatched:
        first, second = fast.get(lookup(0), headers=host), fast.get(lookup(0), headers=host)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.get_json()["data"]["run_url"] == second.get_json()["data"]["run_url"]
    assert dispatched == [STATUS]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_paths_it_answers_are_those_flask_routes_to_the_view(app: Flask, path: str) -> None:
    rule, values = app.url_map.bind("localhost").match(path, "GET", return_rule=True)
    assert (rule.endpoint, values, rule) == (ENDPOINT, {}, StatusPath(app).rule)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", STATUS, 422),  # no chain
        ("GET", f"{STATUS}?chain=chains/a/b/C/00000000000000000000000000000000", 400),  # no file name
        ("GET", lookup(7), 404),  # nothing knows it
        ("HEAD", lookup(0), 200),
        ("OPTIONS", lookup(0), 200),
        ("POST", lookup(0), 405),
        ("GET", "/api/chainstatus/extra", 404),
    ],
)
def test_every_other_answer_is_flask_s_own(app: Flask, probes: None, method: str, path: str, code: int) -> None:
    fast, flask = both(app)
    with dispatches(app) as dispatched:
        ours = fast.open(path, method=method)
    theirs = flask.open(path, method=method)

    assert ours.status_code == theirs.status_code == code
    assert ours.get_data() == theirs.get_data()
    assert dispatched == [path.partition("?")[0]]  # answered by Flask's dispatch


def secured_app(settings: Settings, **changes: Any) -> Flask:
    return build_app(
        settings.replace(api_tokens=f"{entry(WRITER, 'write', 'ci')},{entry(READER, 'read', 'ro')}", **changes)
    )


@pytest.mark.parametrize(
    ("changes", "headers", "code"),
    [
        ({}, {"Host": "rebind.evil.example"}, 421),
        ({"secured": True}, {}, 401),
        ({"secured": True}, bearer("not-a-token"), 401),
        ({"secured": True}, {"Authorization": "Basic d3JpdGVyOg=="}, 401),
        ({"secured": True}, {"Cookie": "nectar_session=forged"}, 401),
        ({"secured": True}, {**bearer(READER), "Host": "evil.example"}, 421),
        ({"public_url": "https://nectar.example.com"}, {"Host": "localhost.evil.example"}, 421),
    ],
    ids=["foreign host", "no token", "wrong token", "not bearer", "a cookie is no token", "token, foreign host",
         "look-alike host"],
)  # fmt: skip
def test_each_check_refuses_through_the_path_in_front(
    settings: Settings, probes: None, changes: dict[str, Any], headers: dict[str, str], code: int
) -> None:
    """A lookup that the path in front would answer 200 is refused as Flask refuses it: were a check skipped there,
    the answer would be the lookup's 200."""
    secured = changes.pop("secured", False)
    app = secured_app(settings, **changes) if secured else build_app(settings.replace(**changes))
    fast, flask = both(app)

    ours, theirs = fast.get(lookup(0), headers=headers), flask.get(lookup(0), headers=headers)

    assert ours.status_code == theirs.status_code == code
    assert ours.get_data() == theirs.get_data() and ours.get_json()["status"] == code


@pytest.mark.parametrize("reads", [True, False], ids=["reads need a token", "reads open"])
def test_a_lookup_the_checks_let_through_is_answered_in_front(settings: Settings, probes: None, reads: bool) -> None:
    app = secured_app(settings, auth_reads=reads)
    fast, _ = both(app)
    with dispatches(app) as dispatched:
        answered = fast.get(lookup(0), headers=bearer(READER) if reads else {})

    assert answered.status_code == 200 and answered.get_json()["data"]["job_status"] == "DONE"
    assert dispatched == []


def test_a_chunked_body_too_large_is_refused_through_it(settings: Settings, probes: None) -> None:
    """A GET whose chunked body is over NECTAR_MAX_BODY is 413 (Flask answers a request with a body), not the lookup."""
    app = build_app(settings.replace(max_body=16))
    fast, _ = both(app)
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked"}

    refused = fast.get(lookup(0), input_stream=io.BytesIO(b"x" * 17), environ_overrides=chunked)
    small = fast.get(lookup(0), input_stream=io.BytesIO(b"x" * 16), environ_overrides=chunked)

    assert (refused.status_code, small.status_code) == (413, 200)


def latencies(app: Flask, endpoint: str, status: str, method: str = "GET") -> float:
    text = Client(app).get("/metrics").get_data(as_text=True)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return next(
        (
            sample.value
            for sample in families["nectar_http_request_duration_seconds"].samples
            if sample.name.endswith("_count")
            and (sample.labels["endpoint"], sample.labels["method"], sample.labels["status"])
            == (endpoint, method, status)
        ),
        0.0,
    )


def test_its_answers_and_the_refusals_behind_it_are_timed_once_each(settings: Settings, probes: None) -> None:
    app = build_app(settings)
    fast, _ = both(app)
    before = latencies(app, STATUS, "200"), latencies(app, STATUS, "404"), latencies(app, STATUS, "421")

    for path, headers in ((lookup(0), {}), (lookup(0), {}), (lookup(7), {}), (lookup(0), {"Host": "evil.example"})):
        fast.get(path, headers=headers)

    after = latencies(app, STATUS, "200"), latencies(app, STATUS, "404"), latencies(app, STATUS, "421")
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "compact"])
def test_a_lookup_whose_json_is_not_the_compact_kind_is_flask_s(app: Flask, probes: None, debug: bool) -> None:
    """In debug mode Flask's JSON is indented: the path in front, which writes the compact kind with the view's
    headers, hands the lookup to the view, which answers it as it answers any other."""
    app.debug = debug
    fast, flask = both(app)
    flask.get(lookup(0))  # its links built once by url_for
    with dispatches(app) as dispatched:
        pairs = same_second(fast, flask, lookup(0))
    ours, theirs = pairs[-1]

    assert (ours.status_code, ours.headers.to_wsgi_list()) == (200, theirs.headers.to_wsgi_list())
    assert ours.get_data() == theirs.get_data()
    assert ours.get_data().startswith(b"{\n") is debug
    assert len(dispatched) == (3 if debug else 1) * len(pairs)  # each pair asked the path in front twice


@pytest.mark.parametrize(
    "query",
    ["chain=a/b.txt", "chain=a&chain=b", "x=1&chain=a", "chain", "chain=", "&&chain=a=b&", "chains=a", "Chain=a",
     "chain=a%2Fb", "ch%61in=a", "chain=a+b", "chain+=a&chain=b", "chain=%ZZ", "chain=caf%C3%A9", "", "x=1",
     "chain=a;chain=b", "chain=%00"],
)  # fmt: skip
def test_the_chain_argument_is_read_as_request_args_reads_it(query: str) -> None:
    environ = EnvironBuilder(path=STATUS, query_string=query).get_environ()
    assert query_value(asked(environ), "chain") == Request(environ).args.get("chain")


def test_a_query_that_is_not_ascii_is_read_as_request_args_reads_it() -> None:
    """WSGI gives the query's bytes as latin-1 text: request.args reads them as UTF-8."""
    environ = EnvironBuilder(path=STATUS).get_environ()
    environ["QUERY_STRING"] = "chain=café".encode().decode("latin1")
    assert query_value(asked(environ), "chain") == Request(environ).args.get("chain") == "café"


@pytest.mark.parametrize("n", [0, 1], ids=["done", "output-gone"])
def test_a_lookup_finds_its_task_once(app: Flask, probes: None, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status and its downloads share one look-up of the task (and so of its store)."""
    fast, flask = both(app)
    assert flask.get(lookup(n)).status_code == 200  # Flask's first answer builds the links the path in front reuses
    catalog = app.extensions["nectar"].catalog
    found: list[tuple[str, ...]] = []
    known_task = catalog.known_task

    def counted(*names: str) -> Any:
        found.append(names)
        return known_task(*names)

    monkeypatch.setattr(catalog, "known_task", counted)
    for client in (fast, flask):
        found.clear()
        assert client.get(lookup(n)).status_code == 200
        assert found == [(Probe(n).key.chain_type, Probe(n).key.chain, Probe(n).key.task)]


def test_a_lookup_answered_in_front_makes_no_request_object(app: Flask, probes: None) -> None:
    """A lookup whose query has nothing to decode is answered from its environ: no request object of the app's is
    made for it (one of a query to decode is, for its ``args``); Flask makes one for each request it answers."""
    made: list[str] = []

    assert app.request_class is Request  # the app's own kind, counted as it is made

    class Counted(Request):
        def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            made.append(environ["PATH_INFO"])
            super().__init__(environ, *args, **kwargs)

    fast, flask = both(app)
    assert flask.get(lookup(0)).status_code == 200  # Flask's first answer builds the links the path in front reuses
    app.request_class = Counted
    with dispatches(app) as dispatched:
        assert fast.get(lookup(0)).status_code == 200
        assert (made, dispatched) == ([], [])
        assert fast.get(f"{STATUS}?chain={Probe(0).key.path.replace('/', '%2F')}").status_code == 200
        assert (made, dispatched) == ([STATUS], [])


def test_a_lookup_answered_in_front_pushes_no_app_context(app: Flask, probes: None) -> None:
    """Nothing a lookup's answer reads is the app's context: none is pushed for it (Flask pushes one for its own)."""
    fast, flask = both(app)
    assert flask.get(lookup(0)).status_code == 200  # Flask's first answer builds the links the path in front reuses
    pushed: list[Flask] = []
    with appcontext_pushed.connected_to(lambda sender, **_: pushed.append(sender), app), dispatches(app) as dispatched:
        assert fast.get(lookup(0)).status_code == 200
        assert (pushed, dispatched) == ([], [])
        assert flask.get(lookup(0)).status_code == 200
        assert (pushed, dispatched) == ([app], [STATUS])


def test_a_step_that_ran_elsewhere_has_its_log_looked_up_in_front(app: Flask, settings: Settings) -> None:
    """A step that did not execute in its run (its output was there) has its log looked up in the service
    (:func:`api.links.logged`): the path in front answers it, without the app's context, with the view's bytes."""
    now = time.time()
    run = finished_run(Probe(2), now)
    ran_elsewhere = Step(run.id, run.task_id, TASK, run.key, "DONE", executed=False, updated_at=now)
    closed_at_end(SQLiteRunStore(settings.registry_path)).import_runs([run], [ran_elsewhere])
    fill_store(settings.local_targets_dir, range(2, 3))
    fast, flask = both(app)
    path = lookup(2)
    flask.get(path)  # its links built once by url_for
    with dispatches(app) as dispatched:
        pairs = same_second(fast, flask, path)
    ours, theirs = pairs[-1]

    assert ours.status_code == theirs.status_code == 200
    assert ours.get_data() == theirs.get_data()
    (step,) = ours.get_json()["data"]["steps"]
    assert step["executed"] is False and step["log_note"]  # looked up: this task left no log here
    assert dispatched == [STATUS] * len(pairs)
