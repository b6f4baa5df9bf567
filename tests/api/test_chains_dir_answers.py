"""An API made by gunicorn directly (``gunicorn 'app:create_app()'``: no ``nectar`` command checked its chains folder)
whose ``NECTAR_CHAINS_DIR`` is a file answers a request that lists the chains with the one line every command refuses
such a folder with, naming it and what is wrong. Before, each request raised ``NotADirectoryError`` in the catalog:
a 500 that said "Internal Server Error", the traceback in the log."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import Processes, base_env, settings_env
from nectar.catalog import ChainCatalog
from nectar.config import Settings
from nectar.errors import InvalidSetting


def refusal(path: Path) -> str:
    return f"the chains folder {path} (--chains-dir, env NECTAR_CHAINS_DIR) is not a folder"


def test_a_catalog_of_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    chains = tmp_path / "chains"
    chains.write_text("not a folder\n")

    with pytest.raises(InvalidSetting) as refused:
        ChainCatalog(chains).refresh()

    assert str(refused.value) == refusal(chains)


def test_gunicorn_serving_a_chains_folder_that_is_a_file_names_it(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    chains = tmp_path / "chains_file"
    chains.write_text("not a folder\n")
    env = base_env() | settings_env(settings.replace(chains_dir=chains))
    port = processes.api(None, env, workers=1).port  # up: /healthz reads no chain

    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains", timeout=60)

    assert answered.value.code == 500
    assert json.loads(answered.value.read())["message"] == refusal(chains)


def test_a_catalog_of_a_link_that_leads_nowhere_is_refused_naming_the_link(tmp_path: Path) -> None:
    """As ``nectar`` refuses it at start (:func:`nectar.config.check_chains_dir`); before, the catalog listed it as no
    chain, a folder not there yet: a link was made by someone, to a folder that is not there."""
    link = tmp_path / "chains_link"
    link.symlink_to(tmp_path / "release" / "chains", target_is_directory=True)

    with pytest.raises(InvalidSetting) as refused:
        ChainCatalog(link).refresh()

    said = f"the chains folder {link} (--chains-dir, env NECTAR_CHAINS_DIR) does not exist (a link to {tmp_path}"
    assert str(refused.value) == f"{said}/release/chains)"


@pytest.mark.parametrize("leads_to", ["a file", "nowhere"])
def test_gunicorn_serving_a_chains_link_names_the_link(
    settings: Settings, processes: Processes, tmp_path: Path, leads_to: str
) -> None:
    """``NECTAR_CHAINS_DIR`` a link: the listing's refusal names the link the user gave, its target only beside it
    where it leads nowhere. Before, the app's settings replaced the link by its target (``Settings.resolved``): a
    link to a file was refused naming a path the user never typed, and a link to nothing listed no chain (200)."""
    target = tmp_path / "release" / "chains"
    target.parent.mkdir()
    if leads_to == "a file":
        target.write_text("not a folder\n")
    link = tmp_path / "chains_link"
    link.symlink_to(target, target_is_directory=True)
    env = base_env() | settings_env(settings) | {"NECTAR_CHAINS_DIR": str(link)}
    port = processes.api(None, env, workers=1).port

    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/chains", timeout=60)

    problem = "is not a folder" if leads_to == "a file" else f"does not exist (a link to {target})"
    assert answered.value.code == 500
    assert json.loads(answered.value.read())["message"] == refusal(link).replace("is not a folder", problem)
