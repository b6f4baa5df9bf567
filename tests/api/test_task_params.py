"""Every parameter kind written in a query string, a JSON body and a CSV cell gives the same task;
a list or tuple parameter repeated in a query string is its items, a repeated scalar a 422 naming it."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

KINDS = "/api/chains/kinds/every_kind_chain/KindsTask"
KINDS_CHAIN = """
import datetime

import luigi

from nectar import NectarTask


class KindsTask(NectarTask):
    names = luigi.ListParameter(default=[])
    pair = luigi.TupleParameter(default=())
    pick = luigi.ChoiceListParameter(choices=["a", "b", "c"], default=[])
    rows = luigi.IntParameter(default=1)
    flag = luigi.BoolParameter(default=False)
    day = luigi.DateParameter(default=datetime.date(2024, 1, 1))
    options = luigi.DictParameter(default={})
    shaped = luigi.DictParameter(default={"a": 1}, schema={"type": "object", "required": ["a"]})
"""


@pytest.fixture
def kinds(write_chain: Callable[[str, str], Path]) -> str:
    write_chain("kinds/every_kind_chain", KINDS_CHAIN)
    return KINDS


def key_by_query(client: FlaskClient, pairs: list[tuple[str, str]]) -> str:
    answer = client.post(KINDS, query_string=pairs)
    assert answer.status_code in {200, 202}, (pairs, answer.get_json())
    return str(answer.get_json()["data"]["key"])


def key_by_body(client: FlaskClient, body: dict[str, Any]) -> str:
    answer = client.post(KINDS, json=body)
    assert answer.status_code in {200, 202}, (body, answer.get_json())
    return str(answer.get_json()["data"]["key"])


def key_by_csv_cell(client: FlaskClient, name: str, cell: str) -> str:
    text = io.StringIO()
    csv.writer(text).writerows([[name], [cell]])
    answer = client.post(f"{KINDS}/batch", data=text.getvalue(), content_type="text/csv")
    row = answer.get_json()["data"]["rows"][0]
    assert row["status"] in {200, 202}, (name, cell, row)
    return str(row["key"])


#: the README's table of how each kind is written: (parameter, query string forms, JSON body value, CSV cell)
FORMS: list[tuple[str, list[list[str]], Any, str]] = [
    ("names", [["a", "b"], ['["a", "b"]']], ["a", "b"], '["a", "b"]'),
    ("names", [["a"], ['["a"]']], ["a"], '["a"]'),
    ("pair", [["x", "y"], ['["x", "y"]']], ["x", "y"], '["x", "y"]'),
    ("pick", [["a", "c"], ["a,c"]], ["a", "c"], "a,c"),
    ("rows", [["7"]], 7, "7"),
    ("flag", [["true"]], True, "true"),
    ("day", [["2024-02-03"]], "2024-02-03", "2024-02-03"),
    ("options", [['{"k": 1}']], {"k": 1}, '{"k": 1}'),
]


@pytest.mark.parametrize(("name", "queries", "body", "cell"), FORMS, ids=[f"{f[0]}-{f[2]}" for f in FORMS])
def test_each_kind_written_each_way_is_the_same_task(
    client: FlaskClient, kinds: str, name: str, queries: list[list[str]], body: Any, cell: str
) -> None:
    keys = {key_by_query(client, [(name, value) for value in values]) for values in queries}
    keys |= {key_by_body(client, {name: body}), key_by_csv_cell(client, name, cell)}
    assert len(keys) == 1, keys
    assert keys != {key_by_body(client, {})}  # the value was taken, not left to its default


@pytest.mark.parametrize("name", ["rows", "flag", "day", "options"])
def test_a_repeated_parameter_that_takes_one_value_is_422_naming_it(client: FlaskClient, kinds: str, name: str) -> None:
    value = {"rows": "1", "flag": "true", "day": "2024-01-02", "options": "{}"}[name]
    answer = client.post(KINDS, query_string=[(name, value), (name, value)])
    assert answer.status_code == 422
    assert "given 2 times" in " ".join(answer.get_json()["errors"][name]), answer.get_json()


def test_the_sales_chains_metrics_repeated_in_the_query_string(client: FlaskClient) -> None:
    """``?metrics=quantity&metrics=revenue`` answered 422 'not a valid list'; only JSON worked."""
    sales = "/api/chains/etl/sales_chain/AggregateSalesTask"
    repeated = client.post(f"{sales}?day=2024-02-03&metrics=quantity&metrics=revenue")
    assert repeated.status_code == 202, repeated.get_json()
    as_json = client.post(sales, query_string={"day": "2024-02-03", "metrics": '["quantity", "revenue"]'})
    assert as_json.get_json()["data"]["key"] == repeated.get_json()["data"]["key"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_json_value_in_a_query_with_a_number_json_does_not_have_is_422_naming_the_parameter(
    client: FlaskClient, kinds: str, constant: str
) -> None:
    for name, text in (("options", f'{{"a": {constant}}}'), ("names", f"[1, {constant}]")):
        answer = client.post(KINDS, query_string={name: text})
        assert answer.status_code == 422, answer.get_json()
        said = f"expected a finite number, got {constant} (JSON has no {constant.lstrip('-')})"
        assert answer.get_json()["errors"] == {name: [said]}


def test_a_value_its_parameters_schema_refuses_is_422_naming_it_with_the_schemas_reason(
    client: FlaskClient, kinds: str
) -> None:
    """luigi checks a DictParameter's ``schema`` with jsonschema, whose error is no ValueError: a 422, not a 500."""
    refused = "not a valid dict: '{\"b\": 1}' ('a' is a required property)"
    bad = {"b": 1}
    by_body = client.post(KINDS, json={"shaped": bad})
    by_query = client.post(KINDS, query_string={"shaped": json.dumps(bad)})
    for answer in (by_body, by_query):
        assert answer.status_code == 422, answer.get_json()
        assert answer.get_json()["errors"] == {"shaped": [refused]}
    assert client.post(KINDS, json={"shaped": {"a": 2}}).status_code in {200, 202}
