"""review16 (round 62): an ``EnumParameter(default=None)`` left out of a submission. luigi cannot write None as an
enum's value (``EnumParameter.serialize``: ``None.name``) as it makes the task, for its ``task_id``: ``python -m
luigi`` fails with that ``AttributeError``; the API answered 500 (the exception unhandled). It answers 422 naming the
parameter and why, as any value the task cannot take; given a value, the task is made and queued."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from harness import lifeline_env

CHAIN = """
import enum

import luigi


class Color(enum.Enum):
    red = 1
    blue = 2


class PaintTask(luigi.Task):
    color = luigi.EnumParameter(enum=Color, default=None)

    def run(self):
        print(self.color)
"""
PAINT = "/api/chains/review16/paint_chain/PaintTask"


def test_an_enum_parameter_defaulting_to_none_left_out_is_422_naming_it(
    client: FlaskClient, write_chain: Callable[[str, str], Path]
) -> None:
    chain = write_chain("review16/paint_chain", CHAIN)
    env = {**os.environ, "PYTHONPATH": str(chain.parent), **lifeline_env()}
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "PaintTask", "--local-scheduler"]
    done = subprocess.run(argv, env=env, cwd=chain.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "AttributeError: 'NoneType' object has no attribute 'name'" in done.stderr, done.stderr
    answer = client.post(PAINT)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["errors"] == {
        "color": [
            "no value given, and its default: luigi cannot write None as this EnumParameter's value (AttributeError: "
            "'NoneType' object has no attribute 'name'); give one"
        ]
    }
    given = client.post(PAINT, query_string={"color": "red"})
    assert given.status_code == 202, given.get_json()
