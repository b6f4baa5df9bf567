"""A task class of luigi's imported into a chain file to be named or subclassed (``from luigi import ExternalTask``,
``WrapperTask``, ``luigi.contrib.external_program.ExternalProgramTask``), not to be run: the chain's hidden list names
only what a user could mean to run (``RangeDaily``, which luigi's command line runs as it is), not every base class of
luigi's the file imports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app import create_app
from nectar.config import Settings
from tests.helpers.registries import closed_at_end

CHAIN = """
import luigi
from luigi import ExternalTask, WrapperTask
from luigi.contrib.external_program import ExternalProgramTask
from luigi.tools.range import RangeDaily


class DayTask(luigi.Task):
    date = luigi.DateParameter()

    def requires(self):
        return ExternalTask()
"""


def test_only_a_luigi_class_a_user_could_run_is_listed_hidden(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    """The chain's page lists ``RangeDaily`` among its hidden tasks, and nothing else of luigi's. Failed before: the
    hidden list held ExternalProgramTask, ExternalTask and WrapperTask too, each "imported: a class of luigi's ...
    to run it here, define one from it in this file"."""
    write_chain("plainleft/bases_chain", CHAIN)
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    closed_at_end(app.extensions["nectar"])
    chain = app.test_client().get("/api/chains/plainleft/bases_chain")
    assert chain.status_code == 200, chain.get_json()
    hidden = {each["name"] for each in chain.get_json()["data"]["hidden"]}
    assert hidden == {"RangeDaily"}, chain.get_json()["data"]["hidden"]
