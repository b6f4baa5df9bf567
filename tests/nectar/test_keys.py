"""Target keys: one formula from (chain, task, parameters) to a path, the same as luigi's task_id hash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nectar.catalog import ChainCatalog
from nectar.config import Settings
from nectar.errors import InvalidKey
from nectar.keys import (
    CANONICAL_ENCODER,
    PARSED_KEYS,
    SERVICE_FILES,
    TargetKey,
    canonical_params,
    param_digest,
    strings_object,
)
from tests.conftest import settings_env

SALES = ("etl", "sales_chain", "AggregateSalesTask")
DIGEST = "0123456789abcdef0123456789abcdef"
KEY_SCRIPT = """
import json, sys
from nectar.config import Settings, configure
from nectar.catalog import ChainCatalog
settings = Settings.from_env()
configure(settings)
info = ChainCatalog(settings.chains_dir).task(*sys.argv[1:4])
print(info.key_of(info.instantiate(json.loads(sys.argv[4]))).path)
"""


def key_for(settings: Settings, values: dict[str, object], ref: tuple[str, str, str] = SALES) -> TargetKey:
    info = ChainCatalog(settings.chains_dir).task(*ref)
    return info.key_of(info.instantiate(values))


def test_same_parameters_give_the_same_key_in_another_process(settings: Settings) -> None:
    values = {"day": "2024-03-01", "rows": 20, "metrics": ["revenue"]}
    answer = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT, *SALES, json.dumps(values)],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert answer.stdout.strip() == key_for(settings, values).path
    # and the wire form of a value does not matter: "20" and 20 are the same parameter
    assert key_for(settings, {**values, "rows": "20"}) == key_for(settings, values)


@pytest.mark.parametrize(
    "other",
    [
        {"day": "2024-03-02", "rows": 20},
        {"day": "2024-03-01", "rows": 21},
        {"day": "2024-03-01", "rows": 20, "group_by": "product"},
        {"day": "2024-03-01", "rows": 20, "metrics": ["quantity"]},
    ],
    ids=["day", "rows", "group_by", "metrics"],
)
def test_different_values_give_different_keys(settings: Settings, other: dict[str, object]) -> None:
    assert key_for(settings, other) != key_for(settings, {"day": "2024-03-01", "rows": 20})


def test_names_take_part_in_the_hash() -> None:
    assert param_digest({"a": "1", "b": "2"}) != param_digest({"a": "2", "b": "1"})
    assert param_digest({"ab": "1"}) != param_digest({"a": "b1"})
    assert param_digest({"a": "1", "b": "2"}) == param_digest({"b": "2", "a": "1"})


def test_parameterless_task_key_is_md5_of_empty_object(settings: Settings) -> None:
    key = key_for(settings, {}, ("testchains", "hello_luigiworld_chain", "TestS3Task"))
    assert key.digest == hashlib.md5(b"{}").hexdigest() == "99914b932bd37a50b983c5e7c90ae93b"
    assert key.path == "chains/testchains/hello_luigiworld_chain/TestS3Task/99914b932bd37a50b983c5e7c90ae93b/out.txt"


@pytest.mark.parametrize(
    "values",
    [{"day": "2024-03-01"}, {"day": "2030-12-31", "rows": 7, "group_by": "product", "metrics": ["revenue"]}],
)
def test_digest_prefix_is_the_hash_of_luigis_task_id(settings: Settings, values: dict[str, object]) -> None:
    info = ChainCatalog(settings.chains_dir).task(*SALES)
    task = info.instantiate(values)
    key = info.key_of(task)
    assert task.task_id.endswith("_" + key.digest[:10])
    assert key.digest == task.target_key.digest
    assert canonical_params(task.to_str_params(only_significant=True, only_public=True)).startswith('{"day":')


@pytest.mark.parametrize(
    "value",
    [
        f"chains/etl/sales_chain/AggregateSalesTask/{DIGEST}/out.txt",
        f"chains/etl/sales_chain/AggregateSalesTask/{DIGEST}/params.txt",
        f"chains/etl/sales_chain/AggregateSalesTask/{DIGEST}/log/stderr.log",
        f"chains/a/b_chain/CTask/{DIGEST}/summary-1.json",
    ],
)
def test_parse_accepts_valid_keys(value: str) -> None:
    key = TargetKey.parse(value)
    assert key.path == value == str(key)
    assert key.folder == value.split(f"/{DIGEST}/")[0] + f"/{DIGEST}"
    # the key the class makes of its parts, to the last attribute (a parse skips the checks its match made)
    made = TargetKey(*value.split("/", 5)[1:])
    assert (key, hash(key), vars(key), list(vars(key))) == (made, hash(made), vars(made), list(vars(made)))
    assert not key < made and not made < key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        (f"chains/etl/../etl/sales_chain/T/{DIGEST}/out.txt", "'..'"),
        (f"chains/etl/sales_chain/T/{DIGEST}/../out.txt", "'..'"),
        (f"/chains/etl/sales_chain/T/{DIGEST}/out.txt", "empty segment"),
        (f"chains/etl//sales_chain/T/{DIGEST}/out.txt", "empty segment"),
        (f"chains/etl/sales_chain/T/{DIGEST}/out.txt/", "empty segment"),
        (f"chains/etl%2fsales_chain/T/{DIGEST}/out.txt", "encoded"),
        (f"chains\\etl/sales_chain/T/{DIGEST}/out.txt", "backslash"),
        (f"chains/etl/sales_chain/T/{DIGEST}/out\x00.txt", "NUL"),
        ("chains/" + "a/" * 600 + "out.txt", "longer than 1024"),
        (f"chains/etl/sales_chain/{'T' * 129}/{DIGEST}/out.txt", "task"),
        ("chains/etl/sales_chain/T/0123456789abcdef/out.txt", "digest"),
        (f"chains/etl/sales_chain/T/{DIGEST.upper()}/out.txt", "digest"),
        (f"chains/etl/sales_chain/T/{DIGEST[:-1]}g/out.txt", "digest"),
        (f"targets/etl/sales_chain/T/{DIGEST}/out.txt", "start with 'chains/'"),
        (f"chains/etl/sales_chain/{DIGEST}/out.txt", "chains/<type>/<chain>/<Task>/<md5>/<file>"),
        (f"chains/etl/sales_chain/T/{DIGEST}/tmp/out.txt", "file 'tmp/out.txt'"),
        (f"chains/bad-type/sales_chain/T/{DIGEST}/out.txt", "chain_type 'bad-type'"),
        (f"chains/etl/sales chain/T/{DIGEST}/out.txt", "chain 'sales chain'"),
    ],
    ids=lambda v: v if len(v) < 40 else None,
)
def test_parse_rejects_bad_keys_saying_why(value: str, message: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        TargetKey.parse(value)
    assert message in str(caught.value)


def test_a_key_s_text_is_parsed_once_while_it_is_among_the_last_parsed() -> None:
    """A status poll parses the key it is sent, and clients poll the same keys: a valid key's text parsed again gives
    the key parsed before (keys are immutable), until :data:`~nectar.keys.PARSED_KEYS` others were parsed since; a
    text that is no key raises each time it is parsed."""
    value = f"chains/etl/sales_chain/AggregateSalesTask/{DIGEST}/out.txt"
    first = TargetKey.parse(value)
    assert TargetKey.parse(value) is first
    for n in range(PARSED_KEYS):  # as many others: the first is the least recently parsed, and goes
        TargetKey.parse(f"chains/etl/sales_chain/T{n}/{DIGEST}/out.txt")
    again = TargetKey.parse(value)
    assert again is not first and (again, vars(again)) == (first, vars(first))
    for _ in range(2):
        with pytest.raises(InvalidKey, match="digest"):
            TargetKey.parse("chains/etl/sales_chain/T/0123/out.txt")


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("etl", "sales_chain", "T", f"{DIGEST}/log", "out.txt"), "digest"),
        (("etl/sales_chain", "T", "U", DIGEST, "out.txt"), "chain_type"),
        (("etl", "sales_chain", f"T/{DIGEST}", "log", "out.txt"), "task"),
        (("etl", "sales_chain", "T", DIGEST, "out..txt"), "file"),
    ],
)
def test_parts_that_print_as_a_valid_key_are_each_checked(parts: tuple[str, ...], message: str) -> None:
    """A key built from parts (not parsed) is refused when one part is wrong, even if their path reads as a key."""
    with pytest.raises(InvalidKey, match=message):
        TargetKey(*parts)


def test_key_never_resolves_outside_the_store(tmp_path: Path) -> None:
    from nectar.stores.local import LocalStore

    store = LocalStore(tmp_path / "targets")
    key = TargetKey.parse(f"chains/etl/sales_chain/T/{DIGEST}/out.txt")
    assert store.path(key).is_relative_to(tmp_path / "targets")
    with pytest.raises(InvalidKey):
        key.with_file("../escape.txt")


@pytest.mark.parametrize(
    "str_params",
    [{}, {"b": "2", "a": "1"}, {"name": 'é "quoted" \\ \n'}, {"list": '["x", "y"]', "É": "\u2028"}],
    ids=["empty", "unsorted", "escapes", "non-ascii"],
)
def test_canonical_params_is_the_json_luigi_hashes(str_params: dict[str, str]) -> None:
    # luigi.task.task_id_str: json.dumps(params, separators=(',', ':'), sort_keys=True)
    assert canonical_params(str_params) == json.dumps(str_params, separators=(",", ":"), sort_keys=True)


@given(st.dictionaries(st.text(), st.text(), max_size=6))
def test_the_json_of_string_parameters_is_the_encoders_own(params: dict[str, str]) -> None:
    """Names and values that are strings (any characters: escaped, non-ASCII, control) are written as json's encoder
    writes them: luigi's canonical JSON (sorted, compact), and json.dumps's (in order, its separators)."""
    assert canonical_params(params) == CANONICAL_ENCODER.encode(params)
    assert strings_object(params.items(), ", ", ": ") == json.dumps(params)


@pytest.mark.parametrize("params", [{"n": 5}, {"a": "x", "b": None}, {"b": 1.5, "a": "x"}])
def test_parameters_not_all_strings_are_written_by_the_encoder(params: dict) -> None:
    """A value that is not a string is written as the encoder writes it (a name or value of another type)."""
    assert canonical_params(params) == CANONICAL_ENCODER.encode(params)
    with pytest.raises(TypeError):
        strings_object(params.items(), ",", ":")


DIGEST = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("digest", [DIGEST, "f" * 32, "0" * 32])
def test_a_key_of_a_digest_is_the_classs_key(digest: str) -> None:
    """A key made of its digest, its names checked before or not, is the one the class makes: equal, ordered and
    hashed alike, the same path and fields."""
    for _ in range(2):  # its names not yet checked, then checked
        made, expected = TargetKey.of_digest("t", "c_chain", "Task", digest), TargetKey("t", "c_chain", "Task", digest)
        assert made == expected and hash(made) == hash(expected) and not made < expected and not expected < made
        assert vars(made) == vars(expected) and made.path == f"chains/t/c_chain/Task/{digest}/out.txt"


@pytest.mark.parametrize(
    "digest", [DIGEST.upper(), DIGEST[:-1], DIGEST + "0", DIGEST[:-1] + "g", DIGEST[:-1] + "/", DIGEST[:-1] + " "]
)
def test_a_key_of_a_digest_that_is_not_an_md5s_is_refused_once_its_names_were_checked(digest: str) -> None:
    TargetKey.of_digest("t", "c_chain", "Task", DIGEST)
    with pytest.raises(InvalidKey, match="digest"):
        TargetKey.of_digest("t", "c_chain", "Task", digest)


@pytest.mark.parametrize(("chain_type", "chain", "task"), [("t/x", "c", "T"), ("t", "c..", "T"), ("t", "c", "Tâche")])
def test_a_key_of_a_digest_with_a_bad_name_is_refused_each_time(chain_type: str, chain: str, task: str) -> None:
    for _ in range(2):  # a refused name is never kept as checked
        with pytest.raises(InvalidKey, match="is not a name"):
            TargetKey.of_digest(chain_type, chain, task, DIGEST)


@pytest.mark.parametrize("filename", sorted(SERVICE_FILES | {"other.csv", "log/extra.log"}))
def test_a_key_of_another_file_of_its_folder_is_the_classs_key(filename: str) -> None:
    """A key's sibling (a step's params.txt, its logs, its out.txt, or a task's own file) is the key the class makes
    of the same parts: equal, ordered and hashed alike, the same path and fields; whichever way the key was made."""
    expected = TargetKey("t", "c_chain", "Task", DIGEST, filename)
    for key in (TargetKey.of_digest("t", "c_chain", "Task", DIGEST), TargetKey.parse(expected.path)):
        made = key.with_file(filename)
        assert made == expected and hash(made) == hash(expected) and not made < expected and not expected < made
        assert vars(made) == vars(expected) and made.path == f"chains/t/c_chain/Task/{DIGEST}/{filename}"
        assert made.with_file(key.filename) == key
