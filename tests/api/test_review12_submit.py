"""review12 (round 58): a chain file saved between two submissions to one API process is what the second one is
made of (README, "Save the file and it is live"), through the path in front of Flask: its parameters' defaults,
kinds and names, its retry policy. Guards what a submission could keep per task class or per task's names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

URL = "/api/chains/review12/hot_chain/HotTask"

#: the task's file, ``{params}`` and ``{policy}`` in its class's body
CHAIN = '''
"""A task whose file the test saves again between two submissions."""

import luigi
from nectar import NectarTask


class HotTask(NectarTask):
    """Its parameters and policy as the file says now."""

    n = luigi.IntParameter()
{params}
{policy}

    def run(self):
        with self.output().open("w") as out:
            out.write("done")
'''

#: by case: the class body's parameters and policy before and after the save, the queries submitted after it, and
#: what their answers must hold (each a status, its data or errors, and its run's record)
Answer = tuple[int, dict[str, Any], dict[str, Any]]
CASES: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, ...], Callable[[list[Answer]], bool]]] = {
    "a parameter's default changed": (
        ("    m = luigi.IntParameter(default=1)", ""),
        ("    m = luigi.IntParameter(default=2)", ""),
        ("n=1",),
        lambda answers: answers[0][0] == 202 and answers[0][1]["created"] and answers[0][2]["params"]["m"] == "2",
    ),
    "a parameter's kind changed": (
        ("    m = luigi.IntParameter(default=1)", ""),
        ("    m = luigi.DateParameter(default=None)", ""),
        ("n=1&m=7",),
        lambda answers: answers[0][0] == 422 and "m" in answers[0][1]["errors"],
    ),
    "a parameter added without a default": (
        ("", ""),
        ("    k = luigi.IntParameter()", ""),
        ("n=1",),
        lambda answers: answers[0][0] == 422 and "k" in answers[0][1]["errors"],
    ),
    "a parameter made insignificant": (
        ("    m = luigi.IntParameter(default=1)", ""),
        ("    m = luigi.IntParameter(default=1, significant=False)", ""),
        ("n=1&m=3", "n=1&m=4"),
        # the same key and run whatever m is (the first submission, before the save, had m=1 in its key)
        lambda answers: (
            [a[0] for a in answers] == [202, 202]
            and answers[0][1]["created"]
            and not answers[1][1]["created"]
            and answers[0][1]["key"] == answers[1][1]["key"]
        ),
    ),
    "its retries changed": (
        ("", "    retries = 0"),
        ("", "    retries = 4"),
        ("n=2",),
        lambda answers: answers[0][0] == 202 and answers[0][2]["max_attempts"] == 5,
    ),
}


def submitted(client: FlaskClient, app: Flask, query: str) -> Answer:
    """A submission's HTTP status, its answer's envelope (its data, or its errors for a 422) and its run's record."""
    answer = client.post(f"{URL}?{query}")
    body = answer.get_json()
    data = body["data"] if answer.status_code < 400 else body
    run: dict[str, Any] = {}
    if answer.status_code == 202:
        found = app.extensions["nectar"].runs.get(data["run_id"])
        run = {"params": dict(found.params), "task_id": found.task_id, "max_attempts": found.max_attempts}
    return answer.status_code, data, run


@pytest.mark.parametrize("case", CASES)
def test_a_chain_file_saved_between_two_submissions_makes_the_second(
    case: str, app: Flask, client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    (params, policy), (params_after, policy_after), queries, check = CASES[case]
    write_chain("review12/hot_chain", CHAIN.format(params=params, policy=policy))
    first = submitted(client, app, "n=1")
    assert first[0] == 202 and first[1]["created"], first
    write_chain("review12/hot_chain", CHAIN.format(params=params_after, policy=policy_after))

    answers = [submitted(client, app, query) for query in queries]

    assert check(answers), (first, answers)
