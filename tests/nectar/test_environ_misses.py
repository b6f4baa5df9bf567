"""What a spare reads of its environment each run (the user's name for luigi's worker, the luigid secret's variable)
it reads in the environment's own dictionary: a variable not set is no ``KeyError`` raised and caught inside
``os.environ.get`` (~3.6k instructions each, callgrind), and what is set reads as ``os.environ`` has it."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import pytest

from nectar.config import Settings
from nectar.luigi_internals import _USER_VARIABLES, worker_user
from nectar.luigid import SECRET_ENV, load_scheduler_secret


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each key looked up in ``os.environ`` from now on (its mapping's ``__getitem__``, which ``get`` calls)."""
    seen: list[str] = []
    environ_type = type(os.environ)
    looked_up = environ_type.__getitem__

    def watched(self: os._Environ[str], key: str) -> str:
        seen.append(key)
        return looked_up(self, key)

    monkeypatch.setattr(environ_type, "__getitem__", watched)
    return seen


def test_the_workers_user_unset_in_the_environment_is_found_without_a_lookup_that_misses(
    monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    for variable in _USER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    expected = getpass.getuser()  # (it reads the password database too, where none is set)
    lookups.clear()
    assert worker_user() == expected
    assert lookups == []


@pytest.mark.parametrize("variable", ["LOGNAME", "USER", "USERNAME"])
def test_the_workers_user_is_the_first_variable_set_as_getpass_reads_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for other in _USER_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, "zoë")
    assert worker_user() == getpass.getuser() == "zoë"


def test_the_luigid_secret_unset_in_the_environment_is_found_again_without_a_lookup_that_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lookups: list[str]
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    settings = Settings(data_dir=tmp_path)
    first = load_scheduler_secret(settings)  # the file made
    lookups.clear()
    assert load_scheduler_secret(settings) == first
    assert lookups == []
    monkeypatch.setenv(SECRET_ENV, "from-the-environment")
    assert load_scheduler_secret(settings) == b"from-the-environment"
