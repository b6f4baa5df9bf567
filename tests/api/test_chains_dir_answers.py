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
