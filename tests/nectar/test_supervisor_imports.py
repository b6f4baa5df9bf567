"""``nectar serve``'s supervisor starts and watches the other processes: it loads neither luigi, requests nor
OpenSSL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nectar
from harness import Processes, base_env, settings_env, wait_until
from nectar.config import Settings

#: what the supervisor never needs, by the compiled part each loads (seen in its memory map from outside): decimal
#: (``nectar.config.setting_text``'s), bz2 and lzma (shutil's, which argparse's help formatter imported to read the
#: terminal's width as each argument was added)
NEVER_NEEDED = ("/_decimal.", "/_bz2.", "/_lzma.")


def test_the_supervisor_process_loads_neither_luigi_nor_requests() -> None:
    """What `nectar serve` imports before it starts its parts (the CLI and the supervisor) weighs a bare Python's."""
    heavy = "{'luigi', 'requests', 'boto3', 'ssl', '_hashlib'}"  # the last two load OpenSSL's libraries (~6 MB)
    probe = f"import sys, nectar.cli, nectar.supervisor; print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_serves_supervisor_loads_neither_decimal_nor_bz2_nor_lzma(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """``nectar serve``'s supervisor up, with every part it starts: its memory map holds none of them (before, it held
    all three: 0.4 MB and 0.5 MB of its RSS)."""
    served = processes.nectar_serve(base_env() | settings_env(settings), tmp_path)
    log = processes.log_of[served.proc.pid]
    wait_until(lambda: "Datanectar is up" in log.read_text())  # said once the workers are started
    maps = Path(f"/proc/{served.proc.pid}/maps").read_text()
    assert [name for name in NEVER_NEEDED if name in maps] == []


def test_the_role_commands_start_without_loading_the_other_commands_modules() -> None:
    """`nectar serve` (and `api`, `scheduler`) parses its arguments without the other commands' modules, and starts
    its API before it loads its own log format: neither is on the cold start's path."""
    probe = (
        "import sys; from nectar.cli import build_parser; args = build_parser(roles_only=True).parse_args(['serve']); "
        "print(sorted(m for m in sys.modules if m.startswith('nectar.cli.') or m == 'nectar.logs.format'))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_chain_still_gets_its_names_from_nectar() -> None:
    """`from nectar import NectarTask, Schedule, Trigger` (what chain files write) works as before; a typo is named."""
    assert nectar.NectarTask.__name__ == "NectarTask"
    assert {nectar.Schedule.__name__, nectar.Trigger.__name__} == {"Schedule", "Trigger"}
    try:
        nectar.NectarTsk  # noqa: B018
    except AttributeError as exc:
        assert "NectarTsk" in str(exc)
    else:
        raise AssertionError("nectar.NectarTsk did not raise AttributeError")
