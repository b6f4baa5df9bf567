"""A failed ``ExternalProgramTask``'s text names the variables its task set, never the worker's values
(:func:`nectar.luigi_internals.program_errors_keep_environment`); review22's test shows it through a served run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from luigi.contrib.external_program import ExternalProgramRunError

from nectar import luigi_internals


@pytest.fixture
def kept() -> Iterator[None]:
    """The replaced text for the test, luigi's back after it (this process's other tests read luigi's own)."""
    before = vars(ExternalProgramRunError)["__str__"]
    luigi_internals.program_errors_keep_environment()
    yield
    ExternalProgramRunError.__str__ = before  # type: ignore[method-assign]


def test_the_text_names_what_the_task_set_and_no_value_of_the_environment(
    kept: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NECTAR_SECRET_KEY", "worker-secret-value")
    env = {"NECTAR_SECRET_KEY": "worker-secret-value", "PGPASSWORD": "task-secret-value", "PATH": "/tmp/own"}
    error = ExternalProgramRunError("Program failed with return code=3:", ["sh", "-c", "exit 3"], env, "out", "err")
    text = str(error)
    assert "Program failed with return code=3:\nCOMMAND: sh -c exit 3\nSTDOUT: out\nSTDERR: err\n" in text, text
    assert "ENVIRONMENT: the worker's own, and PATH, PGPASSWORD set by the task (values not shown)" in text, text
    assert "secret-value" not in text and "/tmp/own" not in text, text
    assert error.env is env  # the error keeps what luigi gave it


def test_a_program_given_no_environment_is_told_as_luigi_tells_it(kept: None) -> None:
    error = ExternalProgramRunError("Program failed with return code=1:", ["false"], {}, "", "")
    assert str(error).endswith("ENVIRONMENT: [empty]\x1b[m"), repr(str(error))


def test_the_text_is_replaced_once_however_often_it_is_asked(kept: None) -> None:
    replaced = vars(ExternalProgramRunError)["__str__"]
    luigi_internals.program_errors_keep_environment()
    assert vars(ExternalProgramRunError)["__str__"] is replaced
    error = ExternalProgramRunError("failed", ["x"], {"ONLY_HERE": "v"}, "", "")
    assert str(error).count("ENVIRONMENT:") == 1 and "ONLY_HERE set by the task" in str(error)
