"""A task class of luigi's imported into a chain file to be run (``from luigi.tools.range import RangeDaily``, run by
``python -m luigi --module <chain> RangeDaily --of DayTask``): the service runs the tasks a chain file defines, so it
is not exposed, and the listing and a submission say why and how to run it here (a task of the file made from it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app import create_app
from nectar.config import Settings
from tests.helpers.registries import closed_at_end

CHAIN = """
import luigi
from luigi.tools.range import RangeDaily


class DayTask(luigi.Task):
    date = luigi.DateParameter()
"""


def test_a_luigi_class_imported_to_be_run_is_refused_naming_it_and_how_to_run_it(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """The chain's page lists ``RangeDaily`` among its hidden tasks with the reason; a submission of it is a 404 with
    that reason. Failed before: not in the hidden list (luigi's classes were left out as base classes), the 404 "no
    task RangeDaily in chain cwdlock/range_chain"."""
    write_chain("cwdlock/range_chain", CHAIN)
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    closed_at_end(app.extensions["nectar"])
    client = app.test_client()
    why = "luigi.tools.range.RangeDaily, imported: a class of luigi's, not a task of this file"
    chain = client.get("/api/chains/cwdlock/range_chain")
    assert chain.status_code == 200, chain.get_json()
    hidden = {each["name"]: each["reason"] for each in chain.get_json()["data"]["hidden"]}
    assert why in hidden.get("RangeDaily", ""), hidden
    posted = client.post("/api/chains/cwdlock/range_chain/RangeDaily", json={"of": "DayTask"})
    assert posted.status_code == 404, posted.get_json()
    assert why in posted.get_json()["message"] and "class MyRangeDailyTask(RangeDaily)" in posted.get_json()["message"]
