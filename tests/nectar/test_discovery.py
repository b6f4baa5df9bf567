"""The catalog: which files are chains, which classes are tasks, their parameters, live reloading."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.catalog import ChainCatalog
from nectar.config import Settings
from nectar.errors import ChainNotFound, InvalidParameters, TaskNotFound
from tests.conftest import SALES_DAY_PARAM

WriteChain = Callable[[str, str], Path]


def marker_source(marker: Path, body: str = "") -> str:
    """A chain that appends a line to ``marker`` each time it is imported."""
    return f"with open({str(marker)!r}, 'a') as _m:\n    _m.write('imported\\n')\n{body}"


def imports(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


VALID = """
import luigi
from nectar import NectarS3Task, NectarTask
from luigi import Task as BaseTask


class Helper(NectarTask):
    '''Not a task: its name does not end in Task.'''


class NotLuigiTask:
    '''Not a task: not a luigi.Task.'''


class FirstTask(NectarTask):
    n = luigi.IntParameter(default=1)


class SecondTask(NectarTask):
    '''The second.'''

    def requires(self):
        helper = Helper()
        return [FirstTask(n=2), helper]
"""


@pytest.fixture
def messy_chains(chains_dir: Path, write_chain: WriteChain, tmp_path: Path) -> Path:
    """The example chains plus broken, misnamed and mixed modules."""
    write_chain("mixed/valid_chain", marker_source(tmp_path / "valid.marker", VALID))
    write_chain("mixed/syntax_chain", "class BrokenTask(:\n    pass\n")
    write_chain("mixed/raising_chain", "raise RuntimeError('this chain cannot be imported')\n")
    for ref in ("bad-type/x_chain", "t/my-x_chain", "t/helper", "t/x_chain_old", "_private/y_chain", ".hidden/z_chain"):
        write_chain(ref, marker_source(tmp_path / f"{ref.replace('/', '.')}.marker"))
    return chains_dir


def test_catalog_lists_valid_and_broken_chains_and_nothing_else(messy_chains: Path, tmp_path: Path) -> None:
    catalog = ChainCatalog(messy_chains)
    chains = {chain.ref: chain for chain in catalog.chains()}

    assert sorted(chains) == [
        "etl/sales_chain",
        "mixed/raising_chain",
        "mixed/syntax_chain",
        "mixed/valid_chain",
        "testchains/hello_luigiworld_chain",
    ]
    assert chains["mixed/syntax_chain"].error == "SyntaxError: invalid syntax (syntax_chain.py, line 1)"
    assert (
        chains["mixed/raising_chain"].error == "RuntimeError: this chain cannot be imported (raising_chain.py, line 1)"
    )
    assert list(chains["mixed/valid_chain"].tasks) == ["FirstTask", "SecondTask"]
    assert list(chains["etl/sales_chain"].tasks) == ["AggregateSalesTask", "CleanSalesTask", "GenerateSalesTask"]
    assert chains["etl/sales_chain"].error is None
    assert set(catalog.skipped) == {str(messy_chains / "bad-type/x_chain.py"), str(messy_chains / "t/my-x_chain.py")}
    # files outside the naming rules were never executed
    assert sorted(p.name for p in tmp_path.glob("*.marker")) == ["valid.marker"]


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("mixed/syntax_chain/BrokenTask", ChainNotFound),
        ("mixed/raising_chain/AnyTask", ChainNotFound),
        ("mixed/valid_chain/Helper", TaskNotFound),
        ("mixed/valid_chain/NectarS3Task", TaskNotFound),
        ("mixed/valid_chain/BaseTask", TaskNotFound),
        ("mixed/valid_chain/NotLuigiTask", TaskNotFound),
        ("mixed/nothing_chain/ATask", ChainNotFound),
        ("t/helper/ATask", ChainNotFound),
    ],
)
def test_only_real_tasks_of_importable_chains_are_found(messy_chains: Path, ref: str, error: type[Exception]) -> None:
    catalog = ChainCatalog(messy_chains)
    with pytest.raises(error):
        catalog.task(*ref.split("/"))
    assert catalog.task("etl", "sales_chain", "AggregateSalesTask").ref == "etl/sales_chain/AggregateSalesTask"


def test_params_are_described(chains_dir: Path) -> None:
    task = ChainCatalog(chains_dir).task("etl", "sales_chain", "AggregateSalesTask")
    params = {p["name"]: p for p in task.to_dict()["params"]}

    assert params["day"] == SALES_DAY_PARAM
    assert (params["rows"]["kind"], params["rows"]["required"], params["rows"]["default"]) == ("int", False, 1000)
    assert params["group_by"]["kind"] == "choice" and params["group_by"]["choices"] == ["product", "region"]
    assert params["group_by"]["default"] == "region"
    assert (params["metrics"]["kind"], params["metrics"]["default"]) == ("list", ["quantity", "revenue"])
    assert task.doc == "Sum quantity and revenue by region or product, for the chosen metrics."


def test_requires_is_found_without_running(messy_chains: Path) -> None:
    catalog = ChainCatalog(messy_chains)
    sales = catalog.chain("etl", "sales_chain").tasks
    assert sales["AggregateSalesTask"].requires == ("CleanSalesTask",)
    assert sales["CleanSalesTask"].requires == ("GenerateSalesTask",)
    assert sales["GenerateSalesTask"].requires == ()
    # Helper() is an upstream task too: a luigi task of the file, though not exposed (its name does not end in Task)
    assert catalog.task("mixed", "valid_chain", "SecondTask").requires == ("FirstTask", "Helper")


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({}, "day", "missing required parameter"),
        ({"day": "yesterday"}, "day", "not a valid date"),
        ({"day": "2024-01-01", "rows": "many"}, "rows", "not a valid int"),
        ({"day": "2024-01-01", "rows": 1.5}, "rows", "expected an integer"),
        ({"day": "2024-01-01", "group_by": "city"}, "group_by", "one of product, region"),
        ({"day": "2024-01-01", "metrics": 3}, "metrics", "expected a list"),
        ({"day": "2024-01-01", "colour": "red"}, "colour", "unknown parameter"),
        ({"day": None}, "day", "must not be null"),
    ],
)
def test_bad_parameters_name_the_field(chains_dir: Path, values: dict[str, object], field: str, message: str) -> None:
    task = ChainCatalog(chains_dir).task("etl", "sales_chain", "AggregateSalesTask")
    with pytest.raises(InvalidParameters) as caught:
        task.instantiate(values)
    assert field in caught.value.errors
    assert message in " ".join(caught.value.errors[field])


def test_added_edited_and_removed_chains_are_seen_without_restart(
    settings: Settings, write_chain: WriteChain, tmp_path: Path
) -> None:
    catalog = ChainCatalog(settings.chains_dir)
    marker, other = tmp_path / "live.marker", tmp_path / "other.marker"
    with pytest.raises(ChainNotFound):
        catalog.chain("live", "grow_chain")

    write_chain(
        "live/steady_chain", marker_source(other, "from nectar import NectarTask\nclass STask(NectarTask): pass")
    )
    write_chain(
        "live/grow_chain", marker_source(marker, "from nectar import NectarTask\nclass ATask(NectarTask): pass")
    )
    assert list(catalog.chain("live", "grow_chain").tasks) == ["ATask"]
    assert (imports(marker), imports(other)) == (1, 1)

    for _ in range(3):  # unchanged files are not imported again
        catalog.chains()
        catalog.task("live", "grow_chain", "ATask")
    assert (imports(marker), imports(other)) == (1, 1)

    write_chain(
        "live/grow_chain",
        marker_source(marker, "from nectar import NectarTask\nclass ATask(NectarTask): pass\nclass BTask(ATask): pass"),
    )
    assert list(catalog.chain("live", "grow_chain").tasks) == ["ATask", "BTask"]
    assert (imports(marker), imports(other)) == (2, 1)

    write_chain("live/grow_chain", "raise ImportError('half-edited')")
    assert catalog.chain("live", "grow_chain").error == "ImportError: half-edited (grow_chain.py, line 1)"
    assert list(catalog.chain("live", "steady_chain").tasks) == ["STask"]

    (settings.chains_dir / "live/grow_chain.py").unlink()
    with pytest.raises(ChainNotFound):
        catalog.chain("live", "grow_chain")
    assert imports(other) == 1


def test_a_missing_chains_folder_is_an_empty_catalog(tmp_path: Path) -> None:
    assert ChainCatalog(tmp_path / "nowhere").chains() == []


def test_a_chain_file_removed_as_the_folder_is_listed_is_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain file removed after its type's folder was listed and before the catalog read its stamp is not there, as
    a listing after the removal finds it (before, the stat raised FileNotFoundError: the listing's 500). The removal
    is real; the test makes it fall between the two, where a deploy that replaces the chains falls by chance."""
    chains = tmp_path / "chains"
    (chains / "etl").mkdir(parents=True)
    (chains / "etl" / "kept_chain.py").write_text("")
    going = chains / "etl" / "going_chain.py"
    going.write_text("")
    listed = os.scandir

    def listing_then_removed(path: str) -> list[os.DirEntry[str]]:
        entries = list(listed(path))
        if Path(path) == going.parent and going.exists():
            going.unlink()
        return entries

    monkeypatch.setattr(os, "scandir", listing_then_removed)
    found = ChainCatalog(chains).chains()
    monkeypatch.undo()

    assert [(chain.chain_type, chain.name) for chain in found] == [("etl", "kept_chain")]
