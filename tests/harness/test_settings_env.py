"""The harness hands a process its settings as environment variables, each written as the variable's own rule reads it:
a float duration (``1e-05``) as a plain decimal, a whole number held as a float (``3.0``) in digits."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import NECTAR, base_env, settings_env
from harness.lifeline import lifeline_env
from nectar.config import Settings

#: values a Settings holds that ``str`` wrote as its rule refuses them (a float in exponent form, a count as 3.0)
VALUES: dict[str, Any] = {
    "worker_poll_interval": 1e-05,
    "retry_delay": 1e-07,
    "lease_timeout": 1e9,
    "retry_backoff": 1.5e0,
    "retries": 3.0,
    "max_queue": 1e6,
    "retry_after": 7.0,
}


@pytest.mark.parametrize(("name", "value"), VALUES.items(), ids=list(VALUES))
def test_a_value_is_read_back_as_it_was(settings: Settings, name: str, value: Any) -> None:
    held = dataclasses.replace(settings, **{name: value})  # as a caller's replace() left it, unresolved

    read = Settings.from_env(settings_env(held))

    assert getattr(read, name) == value


def test_a_command_started_with_them_takes_them(settings: Settings, tmp_path: Path) -> None:
    held = dataclasses.replace(settings, **VALUES)
    env = {**os.environ, **base_env(), **settings_env(held), **lifeline_env()}

    done = subprocess.run([*NECTAR, "chains"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
