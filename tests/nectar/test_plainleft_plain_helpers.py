"""Two chain types each with a helper of the same plain name (``chains/alpha/utils.py``, ``chains/beta/utils.py``),
each chain file putting its own folder on ``sys.path`` and importing it (``import utils``), executed in one process:
a save to one type's helper reaches that type's chain as it is now, and the other type's is its own, unchanged (as
two ``python -m luigi`` processes have them). The change check notes each helper by its file, not by its name."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from app import create_app
from nectar.config import Settings
from tests.helpers.registries import closed_at_end

CHAIN = """
import os
import sys

import luigi

sys.path.insert(0, os.path.dirname(__file__))
import utils


class WordTask(luigi.Task):
    __doc__ = utils.WORD
"""
#: each type's helper: its word is read from a second helper of the same plain name in each type's folder
UTILS = "import words\n\nWORD = words.WORD\n"


def test_a_saved_helper_of_a_plain_name_two_types_share_reaches_its_own_type_only(
    settings: Settings, write_chain: Callable[[str, str], Path], request: pytest.FixtureRequest
) -> None:
    """Each chain's task page shows its own type's word as its doc; alpha's ``words.py`` saved, alpha's lists the new
    word and beta's its own."""
    for name in ("utils", "words"):  # the app in this process executes the chains: their plain modules go with it
        request.addfinalizer(functools.partial(_put_back, name, sys.modules.get(name)))
    for kind in ("alpha", "beta"):
        write_chain(f"{kind}/utils", UTILS)
        write_chain(f"{kind}/words", f"WORD = {kind!r}\n")
        write_chain(f"{kind}/word_chain", CHAIN)
    app = create_app({"NECTAR_SETTINGS": settings, "TESTING": True})
    closed_at_end(app.extensions["nectar"])
    client = app.test_client()

    def default(kind: str) -> object:
        answer = client.get(f"/api/chains/{kind}/word_chain/WordTask")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["data"]["doc"]

    assert (default("alpha"), default("beta")) == ("alpha", "beta")
    write_chain("alpha/words", "WORD = 'alpha, saved'\n")
    assert (default("alpha"), default("beta")) == ("alpha, saved", "beta")


def _put_back(name: str, module: ModuleType | None) -> None:
    """``sys.modules[name]`` as it was (``module``; None: absent)."""
    if module is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = module
