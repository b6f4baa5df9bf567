"""review22 (on main): ``nectar run`` ends a task parameter given without its value (``--aparam`` last) or a word
that is no ``--name`` with exit status 1, where every other usage error of ``nectar`` (an unknown parameter, a bad
value: ``test_cli.py::test_bad_input_exits_2_naming_what_is_wrong``) and luigi's own command line (argparse:
"argument --aparam: expected one argument") end with 2: ``nectar.cli.local._task_params`` raises ``SystemExit`` with
the message, which Python ends with 1. A script that tells a usage error from a failed run by the status (1: the run
failed, README) reads a failed run. Asked of ``nectar.cli.main`` in this process: the status and the message are the
question, and the refusal comes before anything runs."""

from __future__ import annotations

import pytest

from nectar.cli import main
from nectar.config import Settings


@pytest.mark.parametrize(("extra", "said"), [(["--aparam"], "--aparam needs a value"), (["hello"], "got 'hello'")])
def test_a_flag_without_its_value_is_a_usage_error_exit_2(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    said: str,
) -> None:
    """Fails on main: status 1 (``SystemExit('nectar run: --aparam needs a value')``)."""
    monkeypatch.chdir(settings.chains_dir.parent)
    argv = ["run", "testchains/hello_luigiworld_chain/WithDependencyTask", "--chains-dir", str(settings.chains_dir)]
    argv += ["--data-dir", str(settings.data_dir), *extra]
    try:  # a usage error told by main's dispatch (its status returned), or a SystemExit as Python ends with it
        code: object = main(argv)
    except SystemExit as exc:
        code = exc.code
    status = code if isinstance(code, int) else 0 if code is None else 1  # as Python's exit reads it
    told = code if isinstance(code, str) else capsys.readouterr().err  # Python prints a text code to stderr
    assert (status, said in told) == (2, True), told
