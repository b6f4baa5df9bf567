"""Property tests on what the wire reaches: the target key parser and the task parameter schemas.

The key grammar is restated here on its own (not imported from nectar.keys), so that the parser is
checked against the documented grammar rather than against itself. Every test is bounded and
derandomized: the same examples on every run. ``NECTAR_HYPOTHESIS_SCALE=10`` (any factor) runs each with that many
times its examples, for a deeper search than the suite's (its key grammar tests once drew 1,000 / 300 / 300 / 200:
~15 s of CPU in CI for the same paths as the counts below).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import string
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nectar.catalog import ChainCatalog
from nectar.catalog.model import TaskInfo
from nectar.config import Settings
from nectar.errors import InvalidKey
from nectar.keys import TargetKey
from nectar.params import ParamInfo
from nectar.stores.local import LocalStore
from tests.api.conftest import build_app
from tests.conftest import REPO

PROPERTY = hsettings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)


#: how many times its examples each bounded test draws (1 in the suite; see the module's docstring)
SCALE = float(os.environ.get("NECTAR_HYPOTHESIS_SCALE", "1"))


def bounded(max_examples: int, shrink: bool = True) -> hsettings:
    """The suite's settings with a bound on the examples (times :data:`SCALE`); ``shrink=False`` reports the first
    failing example as found (shrinking a request that crashes the app deep in a recursion takes minutes)."""
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return hsettings(PROPERTY, max_examples=max(1, round(max_examples * SCALE)), phases=phases)


# --- the key grammar ------------------------------------------------------------------------------------

NAME = r"[A-Za-z0-9_]{1,128}"
FILE = r"(?:log/)?[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
#: chains/<type>/<chain>/<Task>/<32 lowercase hex>/<file>; the file has no '..' and the key is <= 1024 long
KEY_GRAMMAR = re.compile(
    rf"chains/(?P<type>{NAME})/(?P<chain>{NAME})/(?P<task>{NAME})/(?P<digest>[0-9a-f]{{32}})/(?P<file>{FILE})"
)
MAX_KEY = 1024


def in_grammar(text: str) -> bool:
    match = KEY_GRAMMAR.fullmatch(text)
    return match is not None and ".." not in match["file"] and len(text) <= MAX_KEY


names = st.from_regex(re.compile(NAME), fullmatch=True)
digests = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
files = st.from_regex(re.compile(FILE), fullmatch=True).filter(lambda f: ".." not in f)
valid_keys = st.builds(lambda *parts: "/".join(("chains", *parts)), names, names, names, digests, files).filter(
    lambda k: len(k) <= MAX_KEY
)

#: pieces a hostile key is made of: separators, dots, encodings, NUL, unicode look-alikes, near-valid parts
PIECES = st.one_of(
    st.sampled_from(
        [
            "chains",
            "chains/",
            "/",
            "//",
            ".",
            "..",
            "../",
            "%2f",
            "%2F",
            "%2e%2e",
            "\\",
            "..\\",
            "\x00",
            "\n",
            " ",
            "log",
            "log/",
            "out.txt",
            "0" * 32,
            "A" * 32,
            "ｃｈａｉｎｓ",
            "\u2215",
            "\u2024\u2024",
            "\ufeff",
        ]
    ),
    names,
    digests,
    st.text(max_size=8),
)
hostile_keys = st.one_of(
    st.text(),
    st.lists(PIECES, max_size=12).map("".join),
    st.lists(PIECES, max_size=8).map("/".join),
    # a valid key with something spliced in
    st.tuples(valid_keys, st.integers(min_value=0), PIECES).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1) :]
    ),
    st.text(min_size=1000, max_size=1100, alphabet=string.ascii_letters + "/"),
    st.integers(min_value=MAX_KEY - 40, max_value=MAX_KEY + 40).map(
        lambda n: ("chains/a/b/C/" + "0" * 32 + "/").ljust(n, "x")
    ),
)


@bounded(300)
@given(text=hostile_keys)
@example("chains/a/b/C/" + "0" * 32 + "/out.txt\x00")
@example("chains/a/b/C/" + "0" * 32 + "/log/../../x")
@example("chains/a/b/C/" + "0" * 32 + "/log/x/y")
@example("chains/a/b/C/" + "0" * 32 + "/..")
@example("chains/../../etc/passwd")
@example("chains/a%2fb/b/C/" + "0" * 32 + "/out.txt")
@example("chains\\a\\b\\C\\" + "0" * 32 + "\\out.txt")
@example("chains/a/b/C/" + "0" * 32 + "/out.txt\n")
@example("chains/a/b/C/" + "0" * 32 + "/")
@example("chains/a/b/C/" + "0" * 32 + "/out.txt".ljust(2000, "x"))
def test_parse_returns_a_key_of_the_grammar_or_raises_invalid_key(text: str) -> None:
    try:
        key = TargetKey.parse(text)
    except InvalidKey:
        assert not in_grammar(text)
        return
    assert key.path == text
    assert in_grammar(text), text
    # what the stores build paths from: nothing that climbs out or starts at the root
    assert posixpath.normpath(key.path) == key.path and not key.path.startswith("/")


@bounded(50)
@given(value=st.one_of(st.none(), st.binary(), st.integers(), st.lists(st.text(), max_size=2)))
def test_parse_refuses_what_is_not_text(value: Any) -> None:
    with pytest.raises(InvalidKey):
        TargetKey.parse(value)


@bounded(100)
@given(text=valid_keys, other=files)
def test_a_valid_key_round_trips(text: str, other: str) -> None:
    key = TargetKey.parse(text)
    match = KEY_GRAMMAR.fullmatch(text)
    assert match is not None
    assert key.path == text and str(key) == text
    assert (key.chain_type, key.chain, key.task, key.digest, key.filename) == (
        match["type"],
        match["chain"],
        match["task"],
        match["digest"],
        match["file"],
    )
    assert key.folder == text.rsplit("/", 2 if key.filename.startswith("log/") else 1)[0]
    if len(key.folder) + 1 + len(other) <= MAX_KEY:
        moved = key.with_file(other)
        assert moved.path == f"{key.folder}/{other}"
        assert TargetKey.parse(moved.path) == moved
        assert TargetKey.parse(moved.with_file(key.filename).path) == key


@bounded(100)
@given(text=valid_keys, filename=st.one_of(st.text(), PIECES, st.lists(PIECES, max_size=5).map("".join)))
def test_with_file_keeps_to_the_grammar(text: str, filename: str) -> None:
    key = TargetKey.parse(text)
    try:
        moved = key.with_file(filename)
    except InvalidKey:
        return
    assert moved.filename == filename
    assert KEY_GRAMMAR.fullmatch(moved.path) and ".." not in filename


@bounded(60)
@given(text=valid_keys)
def test_a_valid_key_stays_inside_the_local_store(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    root = tmp_path_factory.getbasetemp() / "store"
    path = LocalStore(root).path(TargetKey.parse(text))
    assert path.is_relative_to(root.resolve())
    assert path == root.resolve() / text


# --- the parameter schemas ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRef:
    chain_type: str
    chain: str
    task: str

    @property
    def url(self) -> str:
        return f"/api/chains/{self.chain_type}/{self.chain}/{self.task}"


def example_tasks() -> list[TaskRef]:
    """Every task of the repository's example chains that takes a parameter (discovery imports them, as the
    service would)."""
    return [
        TaskRef(chain.chain_type, chain.name, name)
        for chain in ChainCatalog(REPO / "chains").chains()
        for name, task in chain.tasks.items()
        if task.params
    ]


TASKS = example_tasks()
TASK_IDS = [f"{t.chain}.{t.task}" for t in TASKS]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: any wire value: text of every kind, what parameters look like, and what parsers choke on
WIRE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=string.digits + "-+_. eE", max_size=30),
    st.dates().map(str),
    st.integers().map(str),
    st.floats().map(str),
    st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=4).map(json.dumps),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
    st.integers(min_value=0, max_value=2000).map(nested),
    st.sampled_from(["", "null", "true", "NaN", "Infinity", "-0", "1e400", "٣", "²", "0x10", "1_000", "region"]),
    st.integers(min_value=4090, max_value=4100).map(lambda n: "1" * n),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates().map(str),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def task_info(client: FlaskClient, task: TaskRef) -> TaskInfo:
    return client.application.extensions["nectar"].catalog.task(task.chain_type, task.chain, task.task)


def crash(exc: BaseException) -> str:
    """Where a request crashed the app: the exception and the frames from our code's last one down."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [
        i for i, frame in enumerate(frames) if frame.filename.startswith(str(REPO)) and "/.venv/" not in frame.filename
    ]
    start = ours[-1] if ours else max(0, len(frames) - 6)
    shown = "".join(traceback.format_list(frames[start : start + 6]))
    return f"the request crashed the app (a 500 over HTTP):\n{shown}{type(exc).__name__}: {exc}"


def post(client: FlaskClient, url: str, **kwargs: Any) -> Any:
    """``client.post``; the testing app propagates an unhandled exception, which is turned into a short failure."""
    try:
        return client.post(url, **kwargs)
    except Exception as exc:  # any crash is the finding
        sent = repr(kwargs)
        sent = sent if len(sent) <= 400 else f"{sent[:300]}...{sent[-100:]} ({len(sent)} characters)"
        raise AssertionError(f"POST {url} {sent}: {crash(exc)}") from None


def assert_accepted_or_named(answer: Any, info: TaskInfo, sent: dict[str, Any]) -> None:
    """202/200 with a key of the grammar, or 422 naming real parameters only; anything else fails."""
    body = answer.get_json()
    assert answer.status_code in (200, 202, 422), (answer.status_code, sent, body)
    if answer.status_code == 422:
        named = set(body.get("errors") or {})
        assert named, body
        assert named <= {p.name for p in info.params}, (named, sent, body)
    else:
        assert in_grammar(body["data"]["key"]), body


#: values every parameter is tried with first, whatever the generation draws
HOSTILE_VALUES = ["", "\x00", "[", "NaN", "1e400", "x" * 4097, nested(600), nested(1500)]


def _fuzz_task(
    settings: Settings, task: TaskRef, values: st.SearchStrategy[Any], send: Callable[..., Any], examples: int
) -> None:
    client = build_app(settings).test_client()
    info = task_info(client, task)
    names = st.sampled_from([p.name for p in info.params])

    @bounded(examples, shrink=False)
    @given(sent=st.dictionaries(names, values, max_size=len(info.params)))
    def check(sent: dict[str, Any]) -> None:
        assert_accepted_or_named(send(client, task.url, sent), info, sent)

    for param in info.params:
        for value in HOSTILE_VALUES:
            check = example(sent={param.name: value})(check)
    check()


@pytest.mark.parametrize("task", TASKS, ids=TASK_IDS)
def test_any_query_value_is_accepted_or_a_422_naming_the_parameter(settings: Settings, task: TaskRef) -> None:
    _fuzz_task(settings, task, WIRE_TEXT, lambda c, url, sent: post(c, url, query_string=sent), 60)


@pytest.mark.parametrize("task", TASKS, ids=TASK_IDS)
def test_any_json_value_is_accepted_or_a_422_naming_the_parameter(settings: Settings, task: TaskRef) -> None:
    values = st.one_of(JSON_VALUE, WIRE_TEXT)
    _fuzz_task(settings, task, values, lambda c, url, sent: post(c, url, json=sent), 40)


@dataclass(frozen=True)
class Valid:
    """One valid value of a parameter: as a query string carries it, as a JSON body does, and the value itself."""

    query: str
    json: Any
    value: Any


def valid_values(info: ParamInfo) -> st.SearchStrategy[Valid] | None:
    """Valid values for ``info``'s kind (None for a kind this test does not know yet)."""
    if info.choices:
        return st.sampled_from(info.choices).map(lambda c: Valid(c, c, c))
    kind = info.kind
    if kind == "int":
        bound = info.max_int  # beyond it, a 422 (tests/security/test_numbers.py)
        return st.integers(min_value=-bound, max_value=bound).map(lambda n: Valid(str(n), n, n))
    if kind == "float":
        return st.floats(allow_nan=False, allow_infinity=False).map(lambda x: Valid(repr(x), x, x))
    if kind == "bool":
        return st.booleans().map(lambda b: Valid(str(b).lower(), b, b))
    if kind == "date":
        return st.dates().map(lambda d: Valid(d.isoformat(), d.isoformat(), d))
    if kind == "list":
        items = st.lists(st.one_of(st.text(max_size=12), st.integers(), st.booleans()), max_size=5)
        return items.map(lambda xs: Valid(json.dumps(xs), xs, xs))
    if kind == "str":
        return st.text(max_size=100).map(lambda s: Valid(s, s, s))
    return None


@pytest.mark.parametrize("task", TASKS, ids=TASK_IDS)
def test_valid_values_are_accepted_and_round_trip(settings: Settings, task: TaskRef) -> None:
    """A valid value is queued (202) and the run keeps luigi's serialisation of it (and of each default)."""
    client = build_app(settings).test_client()
    info = task_info(client, task)
    strategies = {p.name: valid_values(p) for p in info.params}
    unknown = [name for name, strategy in strategies.items() if strategy is None]
    assert not unknown, f"no valid-value strategy for {unknown} (add one for their kind)"
    required = {p.name for p in info.params if p.required}
    known = {name: s for name, s in strategies.items() if s is not None}
    params = st.fixed_dictionaries(
        {name: s for name, s in known.items() if name in required},
        optional={name: s for name, s in known.items() if name not in required},
    )
    family = info.cls.get_task_family()

    def submit(sent: dict[str, Any], as_json: bool) -> Any:
        return post(client, task.url, json=sent) if as_json else post(client, task.url, query_string=sent)

    @bounded(30, shrink=False)
    @given(drawn=params, as_json=st.booleans())
    def check(drawn: dict[str, Valid], as_json: bool) -> None:
        sent = {name: valid.json if as_json else valid.query for name, valid in drawn.items()}
        answer = submit(sent, as_json)
        assert answer.status_code == 202, (sent, answer.get_json())
        data = answer.get_json()["data"]
        assert in_grammar(data["key"]) and TargetKey.parse(data["key"]).task == task.task
        run = client.get(f"/api/runs/{data['run_id']}")
        assert run.status_code == 200, run.get_json()
        stored = run.get_json()["data"]
        assert stored["key"] == data["key"]
        expected = {
            p.name: p.param.serialize(drawn[p.name].value if p.name in drawn else p.param.task_value(family, p.name))
            for p in info.params
        }
        assert {name: stored["params"][name] for name in expected} == expected, sent
        # the same submission again finds the run it queued
        again = submit(sent, as_json)
        assert again.status_code == 202, again.get_json()
        assert again.get_json()["data"]["run_id"] == data["run_id"] and again.get_json()["data"]["created"] is False

    check()
