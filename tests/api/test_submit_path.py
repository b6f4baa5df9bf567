"""The submission's path in front of Flask (api/submit_path.py): the bytes and headers of Flask's view for a run
queued, one active and a task done, the same checks refusing through it, its answers timed, every other case answered
by Flask itself, and no run written twice when Flask answers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask, Request, appcontext_pushed
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import Rule
from werkzeug.test import Client, EnvironBuilder, TestResponse

from api.envelope import compact_envelope
from api.fast_path import Asked, FastPath
from api.submit_path import ENDPOINT, SubmitPath, query_lists
from nectar.config import Settings
from nectar.keys import TargetKey
from tests.api.conftest import build_app
from tests.api.test_auth import READER, WRITER, bearer
from tests.api.test_status_path import dispatches, latencies, secured_app
from tests.conftest import wait_until

TASK = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"


def both(app: Flask) -> tuple[Client, Client]:
    """A client of the app as served (the path in front of Flask) and one of Flask's own WSGI app behind it."""
    served = app.wsgi_app
    assert isinstance(served, FastPath)
    return Client(served), Client(served.flask_wsgi)


def submit(aparam: str) -> str:
    return f"{TASK}?aparam={aparam}"


def warmed(app: Flask, **kwargs: Any) -> None:
    """A submission answered by Flask first: it builds the links of the Host asked by (see the test of it below)."""
    both(app)[1].post(submit(f"warm-{uuid.uuid4().hex[:8]}"), **kwargs)


def masked(answer: TestResponse) -> bytes:
    """An answer's body with its run id and its key's parameter hash put aside (two new runs differ by those)."""
    return re.sub(rb"[0-9a-f]{32}", b"#", answer.get_data())


def same_answers(ours: TestResponse, theirs: TestResponse, masking: bool = False) -> None:
    assert ours.status_code == theirs.status_code
    assert ours.headers.to_wsgi_list() == theirs.headers.to_wsgi_list()
    if masking:
        assert masked(ours) == masked(theirs) and ours.get_data() != theirs.get_data()
    else:
        assert ours.get_data() == theirs.get_data()


@pytest.mark.parametrize(
    ("suffix", "host"), [("", "localhost"), ("/", "127.0.0.1:5000")], ids=["plain", "trailing slash"]
)
def test_the_path_in_front_answers_the_bytes_and_headers_of_the_view(app: Flask, suffix: str, host: str) -> None:
    fast, flask = both(app)
    headers = {"Host": host}
    warmed(app, headers=headers)
    path = TASK + suffix + "?aparam={}"
    with dispatches(app) as dispatched:
        queued = fast.post(path.format("ours"), headers=headers), flask.post(path.format("flas"), headers=headers)
        active = fast.post(path.format("ours"), headers=headers), flask.post(path.format("ours"), headers=headers)

    assert queued[0].status_code == 202 and queued[0].get_json()["data"]["created"] is True
    same_answers(*queued, masking=True)
    assert active[0].status_code == 202 and active[0].get_json()["data"]["created"] is False
    assert active[0].get_json()["data"]["run_id"] == queued[0].get_json()["data"]["run_id"]
    same_answers(*active)
    assert dispatched == [TASK + suffix] * 2  # Flask's own answers only
    assert app.extensions["nectar"].runs.count() == 3  # the warm one, ours, Flask's


def test_a_done_task_is_answered_in_front_as_the_view_answers_it(app: Flask) -> None:
    fast, flask = both(app)
    service = app.extensions["nectar"]
    first = flask.post(submit("done")).get_json()["data"]
    service.store.write_text(TargetKey.parse(first["key"]), "done\n")
    service.runs.cancel(first["run_id"])
    flask.post(submit("done"))  # its download link built once by url_for
    found: list[tuple[TestResponse, TestResponse]] = []

    def asked() -> bool:  # both within one second: a download URL's expiry counts whole seconds
        before, theirs, ours = fast.post(submit("done")), flask.post(submit("done")), fast.post(submit("done"))
        found.append((ours, theirs))
        return before.get_data() == ours.get_data()

    with dispatches(app) as dispatched:
        wait_until(asked, timeout=60)
    ours, theirs = found[-1]

    assert ours.status_code == 200 and ours.get_json()["data"]["job_status"] == "DONE"
    assert ours.get_json()["data"]["resource_url"]
    same_answers(ours, theirs)
    assert len(dispatched) == len(found)  # one of Flask's per pair, none of the path in front's


def test_the_first_submission_by_a_host_is_flask_s_and_writes_one_run(app: Flask) -> None:
    """The status URL is built by url_for once per Host in Flask's request context: the path in front hands over a
    submission before writing it, so Flask's answer is the one run, created."""
    fast, _ = both(app)
    host = {"Host": f"[::1]:{uuid.uuid4().int % 50000 + 10000}"}  # a Host no test asked by before
    with dispatches(app) as dispatched:
        first, second = fast.post(submit("first"), headers=host), fast.post(submit("second"), headers=host)

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.get_json()["data"]["created"] is True and second.get_json()["data"]["created"] is True
    assert dispatched == [TASK]
    assert app.extensions["nectar"].runs.count() == 2


@pytest.mark.parametrize(
    "path",
    [
        TASK,
        TASK + "/",
        "/api/chains/a/b/C",
        "/api/chains/a/b",
        "/api/chains/a/b/C/batch",
        "/api/chains/a/b/C/d",
        "/api/chains/a//C",
        "/api/chains//b/C",
        "/api/chains/a/b/C//",
        "/api/chainsa/b/C/d",
        "/api/chains/a/b/C.x",
    ],
)
def test_the_paths_it_answers_are_those_flask_routes_to_the_view(app: Flask, path: str) -> None:
    route = SubmitPath(app)
    try:
        rule, values = app.url_map.bind("localhost").match(path, "POST", return_rule=True)
    except Exception:  # a 404, 405 or a redirect (a doubled slash)
        rule, values = None, None
    routed = values if rule is not None and rule.endpoint == ENDPOINT else None

    assert route.match(path) == routed
    assert rule is None or rule.endpoint != ENDPOINT or rule == route.rule


@pytest.mark.parametrize(
    ("path", "kwargs", "code"),
    [
        ("/api/chains/testchains/hello_luigiworld_chain/NopeTask", {}, 404),
        ("/api/chains/nope/hello_luigiworld_chain/WithDependencyTask", {}, 404),
        (TASK, {}, 422),  # aparam missing
        (f"{TASK}?aparam=a&aparam=b", {}, 422),  # repeated
        (f"{TASK}?aparam=a&other=1", {}, 422),  # unknown
        (f"{TASK}?aparam={'x' * 5000}", {}, 422),  # too long
        (TASK, {"json": {"aparam": "body"}}, 202),  # a body: Flask reads it
        ("/api/chains/testchains/hello_luigiworld_chain/WithDependencyTaské?aparam=a", {}, 404),  # not ASCII
    ],
    ids=["no task", "no type", "missing", "repeated", "unknown", "too long", "a body", "not ascii"],
)
def test_every_other_answer_is_flask_s_own(app: Flask, path: str, kwargs: dict[str, Any], code: int) -> None:
    fast, flask = both(app)
    warmed(app)
    with dispatches(app) as dispatched:
        ours = fast.post(path, **kwargs)
    theirs = flask.post(path, **kwargs)

    assert ours.status_code == theirs.status_code == code
    if code != 202:  # (a body's run is Flask's answer twice: created, then active)
        assert ours.get_data() == theirs.get_data()
    assert len(dispatched) == 1  # answered by Flask's dispatch


def test_a_full_queue_is_flask_s_503_with_retry_after(settings: Settings) -> None:
    """A write the queue refuses is handed to Flask, which asks again and answers the 503; nothing is written."""
    app = build_app(settings.replace(max_queue=1))
    fast, flask = both(app)
    warmed(app)  # the one run the queue holds
    with dispatches(app) as dispatched:
        ours = fast.post(submit("full"))
    theirs = flask.post(submit("full"))

    assert ours.status_code == theirs.status_code == 503
    assert ours.headers["Retry-After"] == theirs.headers["Retry-After"] == str(settings.retry_after)
    assert ours.get_data() == theirs.get_data()
    assert dispatched == [TASK]
    assert app.extensions["nectar"].runs.count() == 1


def test_a_submission_whose_json_is_not_the_compact_kind_is_flask_s(app: Flask) -> None:
    app.debug = True
    fast, _ = both(app)
    warmed(app)
    with dispatches(app) as dispatched:
        ours = fast.post(submit("debug"))

    assert ours.status_code == 202 and ours.get_data().startswith(b"{\n")
    assert ours.get_json()["data"]["created"] is True  # handed over before its run was written
    assert dispatched == [TASK]
    assert app.extensions["nectar"].runs.count() == 2


@pytest.mark.parametrize(
    ("changes", "headers", "code"),
    [
        ({}, {"Host": "rebind.evil.example"}, 421),
        ({}, {"Origin": "http://rebind.evil.example"}, 403),
        ({"secured": True}, {}, 401),
        ({"secured": True}, bearer("not-a-token"), 401),
        ({"secured": True}, bearer(READER), 403),
        ({"secured": True}, {**bearer(WRITER), "Host": "evil.example"}, 421),
        ({}, {"Sec-Fetch-Site": "cross-site"}, 403),
        ({"public_url": "https://nectar.example.com"}, {"Origin": "http://127.0.0.1:9"}, 403),
    ],
    ids=["foreign host", "cross-site origin", "no token", "wrong token", "a reader's token", "token, foreign host",
         "a browser's cross-site fetch", "another port's origin"],
)  # fmt: skip
def test_each_check_refuses_through_the_path_in_front(
    settings: Settings, changes: dict[str, Any], headers: dict[str, str], code: int
) -> None:
    """A submission the path in front would queue is refused as Flask refuses it, and nothing is written: were a
    check skipped there, the answer would be a 202."""
    secured = changes.pop("secured", False)
    app = secured_app(settings, **changes) if secured else build_app(settings.replace(**changes))
    fast, flask = both(app)
    warmed(app, headers=bearer(WRITER) if secured else {})

    ours, theirs = fast.post(submit("refused"), headers=headers), flask.post(submit("refused"), headers=headers)

    assert ours.status_code == theirs.status_code == code
    assert ours.get_data() == theirs.get_data() and ours.get_json()["status"] == code
    assert app.extensions["nectar"].runs.count() == 1


def test_a_submission_the_checks_let_through_is_answered_in_front(settings: Settings) -> None:
    app = secured_app(settings)
    fast, _ = both(app)
    warmed(app, headers=bearer(WRITER))
    with dispatches(app) as dispatched:
        answered = fast.post(submit("let-through"), headers=bearer(WRITER))

    assert answered.status_code == 202 and answered.get_json()["data"]["created"] is True
    assert dispatched == []


def test_its_answers_and_the_refusals_behind_it_are_timed_once_each(app: Flask) -> None:
    fast, _ = both(app)
    warmed(app)
    rule = SubmitPath(app).rule.rule
    counted = ("202", "422", "421")
    before = [latencies(app, rule, status, "POST") for status in counted]

    for path, headers in ((submit("t1"), {}), (submit("t1"), {}), (TASK, {}), (submit("t2"), {"Host": "evil.example"})):
        fast.post(path, headers=headers)

    after = [latencies(app, rule, status, "POST") for status in counted]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]


@pytest.mark.parametrize("registry", ["sqlite", "postgres"])
def test_dedupe_and_the_queue_bound_hold_in_front_for_each_registry(
    settings: Settings, request: pytest.FixtureRequest, registry: str
) -> None:
    """Queued, then found active (the same run, not created), then refused by the bound: in SQLite and PostgreSQL."""
    url = str(request.getfixturevalue("database_url")) if registry == "postgres" else None
    app = build_app(settings.replace(database_url=url, max_queue=2))
    fast, _ = both(app)
    warmed(app)
    with dispatches(app) as dispatched:
        queued, active = fast.post(submit("dedupe")), fast.post(submit("dedupe"))
        refused = fast.post(submit("over the bound"))

    assert (queued.status_code, active.status_code, refused.status_code) == (202, 202, 503)
    first, again = queued.get_json()["data"], active.get_json()["data"]
    assert (first["created"], again["created"], again["run_id"]) == (True, False, first["run_id"])
    assert active.get_json()["message"] == "an identical run is already active"
    assert refused.headers["Retry-After"] == str(settings.retry_after)
    assert dispatched == [TASK]  # the refusal only, answered by Flask
    assert app.extensions["nectar"].runs.count() == 2


def test_a_submission_answered_in_front_makes_no_request_object_and_pushes_no_app_context(app: Flask) -> None:
    """A submission whose query has nothing to decode is answered from its environ, without the app's context:
    no request object of the app's is made for it (one of a query to decode is, for its ``args``), no app context
    pushed; Flask makes and pushes one of each for each request it answers."""
    made: list[str] = []
    pushed: list[Flask] = []

    class Counted(Request):
        def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            made.append(environ["QUERY_STRING"])
            super().__init__(environ, *args, **kwargs)

    fast, flask = both(app)
    warmed(app)
    app.request_class = Counted
    answers = []
    with appcontext_pushed.connected_to(lambda sender, **_: pushed.append(sender), app), dispatches(app) as dispatched:
        answers.append(fast.post(submit("plain")))
        assert (made, pushed, dispatched) == ([], [], [])
        answers.append(fast.post(submit("to%2Ddecode")))
        assert (made, pushed, dispatched) == (["aparam=to%2Ddecode"], [], [])
        answers.append(flask.post(submit("flask")))
        assert (made[1:], pushed, dispatched) == (["aparam=flask"], [app], [TASK])
    runs = app.extensions["nectar"].runs
    assert [answer.status_code for answer in answers] == [202] * 3
    found = [runs.get(answer.get_json()["data"]["run_id"]).params["aparam"] for answer in answers]
    assert found == ["plain", "to-decode", "flask"]


@pytest.mark.parametrize(
    "query",
    ["aparam=a", "aparam=a&aparam=b", "x=1&aparam=a&x=2", "aparam", "aparam=", "&&aparam=a=b&", "=a", "=", "&",
     "aparam=a%2Fb", "ap%61ram=a", "aparam=a+b", "aparam+=a&aparam=b", "aparam=%ZZ", "aparam=caf%C3%A9", "",
     "aparam=a;aparam=b", "aparam=%00", "b=1&a=2&b=3"],
)  # fmt: skip
def test_the_query_is_read_as_request_args_reads_it(query: str) -> None:
    environ = EnvironBuilder(path=TASK, method="POST", query_string=query).get_environ()
    rule = Rule("/api/chains/<chain_type>/<chain>/<task>", endpoint=ENDPOINT)
    assert list(query_lists(Asked(Flask(__name__), environ, rule, {}))) == list(Request(environ).args.lists())


#: queries read the same way by Flask and by the path in front, or not: each piece werkzeug decodes (``%``, ``+``,
#: bytes beyond ASCII as a server hands them: UTF-8 read as latin-1), splits (``&``, ``=``) or does not (``;``), a
#: name repeated, empty or unknown, a value empty or too long
QUERIES = [
    "aparam=q", "aparam=q&", "&aparam=q", "aparam=q&&", "aparam=q;", ";aparam=q", "aparam=q;aparam=r",
    "aparam=q&aparam=r", "aparam=q&aparam=", "aparam", "aparam=", "aparam==q", "aparam=q=r", "=q&aparam=q",
    "aparam=q&=", "aparam=q&x",
    "aparam=a+b", "aparam=a%20b", "aparam=a%2Bb", "ap%61ram=q", "aparam=%ZZ", "aparam=%", "aparam=q%", "aparam=%00",
    "aparam=caf\xc3\xa9", "aparam=caf%C3%A9", "aparam=%E9", "aparam=q&caf\xc3\xa9=1", "aparam[]=q", "APARAM=q",
    "aparam=" + "x" * 5000, "aparam=q&" + "&".join(f"x{i}=1" for i in range(50)),
]  # fmt: skip
#: the same submission by each kind of client the checks tell apart, and whether the path in front answers it
HEADERS = {
    "plain": ({}, True),
    "a port": ({"Host": "127.0.0.1:5000"}, True),
    "an empty body": ({"Content-Length": "0"}, True),
    "foreign host": ({"Host": "evil.example"}, False),  # a 421, Flask's
    "null origin": ({"Origin": "null"}, False),  # a 403, Flask's
}


@pytest.mark.parametrize("client", sorted(HEADERS))
def test_each_query_is_answered_in_front_as_flask_answers_it(app: Flask, client: str) -> None:
    """For every query of :data:`QUERIES` the bytes, headers and status of the path in front's answer are Flask's:
    asked of Flask first (its run made, or refused), then of both; queries to decode are answered in front too."""
    headers, answers_in_front = HEADERS[client]
    fast, flask = both(app)
    warmed(app, headers=headers)
    in_front = 0
    for query in QUERIES:
        asked = {"headers": headers, "environ_overrides": {"QUERY_STRING": query}}
        flask.post(TASK, **asked)
        with dispatches(app) as dispatched:
            ours = fast.post(TASK, **asked)
        theirs = flask.post(TASK, **asked)
        assert (ours.status_code, ours.headers.to_wsgi_list()) == (theirs.status_code, theirs.headers.to_wsgi_list())
        assert ours.get_data() == theirs.get_data(), query
        in_front += not dispatched
    assert (in_front >= 10) if answers_in_front else (in_front == 0), in_front


QUEUED_DATA = {
    "key": "local/chain/Task/0123456789abcdef0123456789abcdef",
    "status_url": "http://127.0.0.1:8000/api/chains/local/chain/Task/status?param_hash=0123&x=a b<c>",
    "created": True,
    "expires_in": 3600,
    "job_status": "PENDING",
    "run_id": "0193a1b2c3d4-5e6f",
    "resource_url": None,
}
#: answers the path writes from its template (True) or leaves to the encoder (False)
WRITTEN_ANSWERS: list[tuple[dict[str, Any], int, str, bool]] = [
    (QUEUED_DATA, 202, "queued", True),
    ({**QUEUED_DATA, "created": False, "job_status": "RUNNING"}, 202, "an identical run is already active", True),
    ({**QUEUED_DATA, "expires_in": 10**20}, 202, "queued", True),
    *(  # a value JSON escapes, in each text the template writes (the message's below)
        ({**QUEUED_DATA, field: f"{QUEUED_DATA[field]}{odd}"}, 202, "queued", False)
        for field in ("key", "job_status", "run_id", "status_url")
        for odd in ('a"b', "a\\b", "a\x7fb", "a\tb", "é", "\u2028", "a\x00b")
    ),
    *(({**QUEUED_DATA, field: 7}, 202, "queued", False) for field in ("key", "job_status", "run_id", "status_url")),
    ({**QUEUED_DATA, "created": 1}, 202, "queued", False),
    ({**QUEUED_DATA, "expires_in": True}, 202, "queued", False),
    ({**QUEUED_DATA, "resource_url": "http://x"}, 202, "queued", False),
    ({**QUEUED_DATA, "extra": 1}, 202, "queued", False),
    (QUEUED_DATA, 200, "success", False),
    (QUEUED_DATA, 202, 'say "queued"', False),
]


@pytest.mark.parametrize(("data", "status", "message", "templated"), WRITTEN_ANSWERS)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_a_queued_runs_answer_is_written_as_the_encoder_writes_it(
    data: dict[str, Any], status: int, message: str, templated: bool, ensure_ascii: bool
) -> None:
    """The envelope of a queued (or active) run's answer written from the path's template is the encoder's, byte for
    byte; any other answer, or a value JSON escapes, is left to the encoder; so is every answer of an app that does
    not sort its JSON's keys."""
    provider = Flask(__name__).json
    assert isinstance(provider, DefaultJSONProvider)
    provider.ensure_ascii = ensure_ascii
    written = SubmitPath.written(provider, data, status, message)
    assert written == (compact_envelope(provider, data, status, message) if templated else None)
    assert SubmitPath.write(provider, data, status, message) == compact_envelope(provider, data, status, message)
    provider.sort_keys = False
    assert SubmitPath.written(provider, data, status, message) is None
